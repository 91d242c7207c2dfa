//! The one-command demo, as a new user runs it (in-process mock broker, no setup): both of the
//! seed's scenarios must end as the seed says. At 4x rather than the default 10x: the loop is
//! closed, and on a machine busy with the rest of the suite a router's lag of ~0.8 s at 10x
//! was enough for SMALL's first bucket to be judged on PROBE-routed traffic.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_plays_both_seed_scenarios_to_their_expected_ends() {
    let report = rollout_breaker::demo::run(None, 4.0)
        .await
        .expect("demo runs");
    use rollout_breaker::engine::Phase::*;
    assert_eq!(
        report.path("checkout-agent"),
        vec![Off, Probe, Small, Medium, Full]
    );
    assert_eq!(report.path("search-agent"), vec![Off, Probe, Small, Off]);
    assert!(report.as_expected());
    assert!(report.elapsed.as_secs() < 150, "took {:?}", report.elapsed);
    // Traffic followed the table: the good rollout's candidate served real requests.
    let good = report
        .progress
        .iter()
        .find(|p| p.rollout_id == "checkout-agent")
        .unwrap();
    assert!(good.candidate > 100, "{good:?}");
}
