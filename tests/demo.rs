//! The one-command demo, as a new user runs it (in-process mock broker, no setup): both of the
//! seed's scenarios must end as the seed says.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_plays_both_seed_scenarios_to_their_expected_ends() {
    let report = rollout_breaker::demo::run(None).await.expect("demo runs");
    use rollout_breaker::engine::Phase::*;
    assert_eq!(
        report.path("checkout-agent"),
        vec![Off, Probe, Small, Medium, Full]
    );
    assert_eq!(report.path("search-agent"), vec![Off, Probe, Small, Off]);
    assert!(report.as_expected());
    assert!(report.elapsed.as_secs() < 60, "took {:?}", report.elapsed);
    // Traffic followed the table: the good rollout's candidate served real requests.
    let good = report
        .progress
        .iter()
        .find(|p| p.rollout_id == "checkout-agent")
        .unwrap();
    assert!(good.candidate > 100, "{good:?}");
}
