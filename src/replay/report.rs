//! The replay report: one self-contained HTML page, per rollout an inline SVG timeline
//! (plotters' SVG backend: text stays SVG text, no fonts or scripts needed) and its decisions.
//!
//! Per rollout, three stacked plots over event time: the candidate's traffic share and phase
//! as recorded, with a marker at each decision (action and actor); completion per bucket of
//! candidate and baseline against the policy's rollback, SLO and advancement thresholds; p95
//! latency per bucket of both against `max_latency_ms` (which the threshold rule applies to the
//! window's mean). Below the plots, every recorded decision with its reason, and the first
//! divergence when there is one.

use std::collections::BTreeMap;
use std::fmt::Write;

use plotters::prelude::*;

use super::compare::Divergence;
use super::timeline::{Bucket, Side};
use crate::engine::{Action, Decision, Policy};

/// What the report shows of one rollout.
pub struct RolloutReport<'a> {
    /// The rollout.
    pub rollout_id: &'a str,
    /// Its buckets within the span (empty when no event of it fell in the span).
    pub buckets: Option<&'a BTreeMap<i64, Bucket>>,
    /// Its recorded decisions within the span, by sequence.
    pub recorded: Vec<&'a Decision>,
    /// Where the re-run first differs, if it does.
    pub divergence: Option<&'a Divergence>,
    /// The policy whose thresholds are drawn.
    pub policy: Policy,
}

/// What the report says about the replay as a whole.
pub struct ReportHeader {
    /// Where the input came from (topics or an export directory).
    pub source: String,
    /// The span compared and plotted, as text.
    pub span: String,
    /// Bucket width of the plots, in ms.
    pub bucket_ms: u64,
    /// The policy file the re-run used instead of the configured default, if any.
    pub policy_file: Option<String>,
}

/// `t` (ms since the epoch) as RFC 3339 in UTC.
pub fn rfc3339(t: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn decision_line(d: &Decision) -> String {
    format!(
        "#{} {} {} &rarr; {} at {}% by {} at {}: {}",
        d.sequence,
        d.action,
        d.from,
        d.to,
        d.traffic.percent(),
        escape(&d.actor),
        rfc3339(d.at),
        escape(&d.reason)
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
h2{margin-top:2em;border-bottom:1px solid #ccc}.ok{color:#176f2c}.bad{color:#b00020}\
table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ddd;padding:3px 6px;\
vertical-align:top;text-align:left}.plot svg{max-width:100%;height:auto}";

/// The whole page.
pub fn render(header: &ReportHeader, rollouts: &[RolloutReport<'_>]) -> String {
    let mut html = String::new();
    let diverged = rollouts.iter().filter(|r| r.divergence.is_some()).count();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>rollout-breaker replay</title><style>{STYLE}</style></head><body>\n\
         <h1>rollout-breaker replay</h1>\n<p>Input: {}. Span: {}. Buckets of {} s.{}</p>\n\
         <p class=\"{}\">{} rollout(s): {} agree, {} diverge.</p>\n",
        escape(&header.source),
        escape(&header.span),
        header.bucket_ms as f64 / 1000.0,
        header
            .policy_file
            .as_ref()
            .map(|p| format!(" Default policy replaced by {}.", escape(p)))
            .unwrap_or_default(),
        if diverged == 0 { "ok" } else { "bad" },
        rollouts.len(),
        rollouts.len() - diverged,
        diverged,
    );
    for r in rollouts {
        let verdict = match r.divergence {
            None => format!(
                "<span class=\"ok\">agrees ({} decisions)</span>",
                r.recorded.len()
            ),
            Some(d) => format!("<span class=\"bad\">diverges at #{}</span>", d.sequence()),
        };
        let _ = writeln!(
            html,
            "<section><h2>{} &mdash; {verdict}</h2>",
            escape(r.rollout_id)
        );
        if let Some(d) = r.divergence {
            let side = |x: &Option<Decision>| {
                x.as_ref()
                    .map(decision_line)
                    .unwrap_or_else(|| "(none)".into())
            };
            let _ = writeln!(
                html,
                "<p class=\"bad\">recorded: {}<br>replayed: {}</p>",
                side(&d.recorded),
                side(&d.replayed)
            );
        }
        match plot(r) {
            Ok(svg) => {
                let _ = writeln!(html, "<div class=\"plot\">{svg}</div>");
            }
            Err(e) => {
                let _ = writeln!(html, "<p class=\"bad\">plot failed: {}</p>", escape(&e));
            }
        }
        html.push_str(
            "<table><tr><th>#</th><th>time</th><th>action</th><th>phase</th><th>traffic</th>\
             <th>actor</th><th>reason</th></tr>\n",
        );
        for d in &r.recorded {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} &rarr; {}</td><td>{}%</td>\
                 <td>{}</td><td>{}</td></tr>",
                d.sequence,
                rfc3339(d.at),
                d.action,
                d.from,
                d.to,
                d.traffic.percent(),
                escape(&d.actor),
                escape(&d.reason)
            );
        }
        html.push_str("</table></section>\n");
    }
    html.push_str("</body></html>\n");
    html
}

fn color(action: Action) -> RGBColor {
    match action {
        Action::Rollback => RGBColor(0xb0, 0x00, 0x20),
        Action::Advance => RGBColor(0x17, 0x6f, 0x2c),
        Action::Start => RGBColor(0x1f, 0x4e, 0xb4),
        _ => RGBColor(0x66, 0x66, 0x66),
    }
}

const CANDIDATE: RGBColor = RGBColor(0xd9, 0x5f, 0x02);
const BASELINE: RGBColor = RGBColor(0x1b, 0x9e, 0x77);

/// The rollout's three plots as one SVG document.
fn plot(r: &RolloutReport<'_>) -> Result<String, String> {
    let empty = BTreeMap::new();
    let buckets = r.buckets.unwrap_or(&empty);
    let times = buckets
        .keys()
        .copied()
        .chain(r.recorded.iter().map(|d| d.at));
    let (t0, t1) = times.fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
    if t0 > t1 {
        return Err("no events and no decisions in the span".into());
    }
    let width = buckets
        .keys()
        .next()
        .and_then(|_| buckets.keys().nth(1).zip(buckets.keys().next()))
        .map_or(10_000, |(b, a)| (b - a).max(1));
    let t1 = t1 + width;
    let x = |t: i64| (t - t0) as f64 / 60_000.0;
    let (x0, x1) = (0.0, x(t1).max(0.1));
    let p = &r.policy;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 780)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((3, 1));
        let x_desc = format!("minutes since {}", rfc3339(t0));
        let markers = |chart: &mut ChartContext<'_, _, _>, top: f64, label: bool| {
            for (i, d) in r.recorded.iter().enumerate() {
                let c = color(d.action);
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x(d.at), 0.0), (x(d.at), top)],
                        c.stroke_width(1),
                    )))
                    .map_err(|e| e.to_string())?;
                if label {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{} ({})", d.action, d.actor),
                            // Staggered, so close decisions' labels do not overlap.
                            (x(d.at), top * (0.97 - 0.09 * (i % 4) as f64)),
                            ("sans-serif", 12).into_font().color(&c),
                        )))
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok::<(), String>(())
        };
        // One line per variant of a per-bucket figure, with a dot at each bucket.
        let per_variant = |chart: &mut ChartContext<'_, _, _>, value: fn(&Side) -> Option<f64>| {
            for (side, name, c) in [
                (true, "candidate", CANDIDATE),
                (false, "baseline", BASELINE),
            ] {
                let points: Vec<(f64, f64)> = buckets
                    .iter()
                    .filter_map(|(t, b)| {
                        value(if side { &b.candidate } else { &b.baseline })
                            .map(|v| (x(*t + width / 2), v))
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(name)
                    .legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 16, b)], c));
                chart
                    .draw_series(points.into_iter().map(|pt| Circle::new(pt, 2, c.filled())))
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        };

        // 1. Traffic share and phase, as recorded.
        let mut chart = ChartBuilder::on(&panels[0])
            .caption(
                "candidate traffic (%) and phase, as recorded",
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0.0..110.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc.as_str())
            .y_desc("%")
            .draw()
            .map_err(|e| e.to_string())?;
        let mut steps = Vec::new();
        let mut level = r.recorded.first().map_or(0.0, |d| {
            if d.from == d.to {
                d.traffic.percent()
            } else {
                0.0
            }
        });
        steps.push((x0, level));
        for d in &r.recorded {
            steps.push((x(d.at), level));
            level = d.traffic.percent();
            steps.push((x(d.at), level));
        }
        steps.push((x1, level));
        chart
            .draw_series(LineSeries::new(steps, BLUE.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        for d in &r.recorded {
            chart
                .draw_series(std::iter::once(Text::new(
                    d.to.to_string(),
                    (x(d.at), d.traffic.percent() + 2.0),
                    ("sans-serif", 11).into_font(),
                )))
                .map_err(|e| e.to_string())?;
        }
        markers(&mut chart, 110.0, true)?;

        // 2. Completion per bucket against the thresholds.
        let mut chart = ChartBuilder::on(&panels[1])
            .caption("completion per bucket", ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0.0..1.05)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .y_desc("completion")
            .draw()
            .map_err(|e| e.to_string())?;
        for (value, name, c) in [
            (p.rollback_threshold.get(), "rollback_threshold", RED),
            (
                p.min_task_completion_rate.get(),
                "min_task_completion_rate",
                MAGENTA,
            ),
            (
                p.advancement_threshold.get(),
                "advancement_threshold",
                GREEN,
            ),
        ] {
            chart
                .draw_series(LineSeries::new(vec![(x0, value), (x1, value)], c.mix(0.6)))
                .map_err(|e| e.to_string())?
                .label(format!("{name} {value}"))
                .legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 16, b)], c));
        }
        per_variant(&mut chart, Side::completion)?;
        markers(&mut chart, 1.05, false)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;

        // 3. p95 latency per bucket against max_latency_ms.
        let highest = buckets
            .values()
            .flat_map(|b| [b.candidate.p95(), b.baseline.p95()])
            .flatten()
            .fold(p.max_latency_ms, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&panels[2])
            .caption("p95 latency per bucket (ms)", ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0.0..highest)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc.as_str())
            .y_desc("ms")
            .draw()
            .map_err(|e| e.to_string())?;
        let limit = p.max_latency_ms;
        chart
            .draw_series(LineSeries::new(
                vec![(x0, limit), (x1, limit)],
                RED.mix(0.6),
            ))
            .map_err(|e| e.to_string())?
            .label(format!(
                "max_latency_ms {limit} (the threshold rule: on the mean)"
            ))
            .legend(|(a, b)| PathElement::new(vec![(a, b), (a + 16, b)], RED));
        per_variant(&mut chart, Side::p95)?;
        markers(&mut chart, highest, false)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
