//! The engine is sans-IO: no file under `src/engine/` may use tokio, rdkafka, a clock or std IO
//! (outside its `#[cfg(test)]` unit tests, which may use seeded randomness).
//! This is what makes replays and restarts decide the same as live runs.

#[test]
fn engine_imports_no_io_no_clock_no_runtime() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let forbidden = [
        "tokio",
        "rdkafka",
        "SystemTime",
        "Instant",
        "std::io",
        "std::fs",
        "std::net",
        "std::thread",
        "thread_rng",
        "rand::",
        "std::env",
    ];
    let mut files = 0;
    // Recursive: modules may have submodules in a directory named after them.
    let mut paths = Vec::new();
    let mut dirs = vec![dir.clone()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                paths.push(path);
            }
        }
    }
    for path in paths {
        if path.extension().is_some_and(|e| e == "rs") {
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests do not ship; they may use seeded randomness.
            let shipped = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in shipped.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for f in forbidden {
                    assert!(
                        !code.contains(f),
                        "{}:{}: the engine must stay pure, found `{f}`: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
    assert!(
        files >= 8,
        "expected the engine's modules under {}",
        dir.display()
    );
}
