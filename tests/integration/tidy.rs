//! House rules checked mechanically (STYLE.md #21): pure modules import no IO, clocks or
//! ambient randomness; every source file starts with a module doc; every engine module is in
//! ARCHITECTURE.md's code map; no `dbg!`, `todo!`, `unimplemented!` or ignored tests.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for d in [
        "engine/src",
        "engine/benches",
        "worker-sdk/src",
        "examples/src",
        "tests/integration",
    ] {
        rust_files(&root().join(d), &mut files);
    }
    assert!(files.len() > 10, "found only {} source files", files.len());
    files
}

#[test]
fn pure_modules_do_no_io() {
    let pure = [
        "asl",
        "jsonpath.rs",
        "intrinsics.rs",
        "jsonata.rs",
        "dataflow.rs",
        "timestamp.rs",
        "task_token.rs",
        "history.rs",
        "interp",
        "error.rs",
        "api/sigv4.rs",
        "test_state.rs",
    ];
    let forbidden = [
        "tokio",
        "lapin",
        "redis",
        "axum",
        "std::fs",
        "std::net",
        "SystemTime",
        "Instant::now",
        "rand::",
        "std::env",
        "std::process",
    ];
    let mut problems = Vec::new();
    for m in pure {
        let mut files = Vec::new();
        let p = root().join("engine/src").join(m);
        if p.is_dir() {
            rust_files(&p, &mut files);
        } else {
            files.push(p);
        }
        for f in files {
            let text = std::fs::read_to_string(&f).expect("readable source");
            // Unit tests at the bottom of a file may read fixtures.
            let body = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in body.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for word in forbidden {
                    if contains_word(code, word) {
                        problems.push(format!("{}:{}: uses {word}", f.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "pure modules must not do IO:\n{}",
        problems.join("\n")
    );
}

/// `word` occurs in `code` not as the tail of a longer identifier (`Operand::` is not `rand::`).
fn contains_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(i, _)| {
        !code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn every_source_file_has_a_module_doc() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! module doc:\n{}",
        missing.join("\n")
    );
}

#[test]
fn architecture_names_every_engine_module() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root().join("engine/src"))
        .expect("engine/src")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        let module = name.trim_end_matches(".rs");
        if module == "lib" {
            continue;
        }
        if !arch.contains(&format!("`{module}")) {
            missing.push(module.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not describe: {missing:?}"
    );
}

#[test]
fn no_placeholders_or_ignored_tests() {
    // Built from pieces so this file does not match itself.
    let banned = [
        ["dbg", "!("].concat(),
        ["todo", "!("].concat(),
        ["unimplemented", "!("].concat(),
        ["#[", "ignore]"].concat(),
    ];
    let mut problems = Vec::new();
    for f in sources() {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            for b in &banned {
                if line.contains(b.as_str()) {
                    problems.push(format!("{}:{}: {b}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// No docker engine runs here, so the compose file is checked by reading: every command it
/// runs must be a binary the Dockerfile builds (`stepline` with a real subcommand, or an
/// example `*-worker`), every Dockerfile it names must exist, and every example file a setup
/// script reads must be there.
#[test]
fn compose_file_runs_binaries_that_exist() {
    let compose =
        std::fs::read_to_string(root().join("docker-compose.yml")).expect("docker-compose.yml");
    let bins: Vec<String> = std::fs::read_dir(root().join("examples/src/bin"))
        .expect("examples/src/bin")
        .flatten()
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    let subcommands = [
        "server",
        "dev",
        "health",
        "run",
        "validate",
        "conformance",
        "bench",
        "create",
        "update",
        "start",
        "activities",
    ];
    // Shell scripts (the one-shot setup) too: every `stepline <sub>` they run, and every
    // file they read from the mounted `./examples`.
    for line in compose
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
    {
        for (i, _) in line.match_indices("stepline ") {
            let sub = line[i + "stepline ".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            if sub.chars().all(|c| c.is_ascii_lowercase()) && !sub.is_empty() {
                assert!(
                    subcommands.contains(&sub),
                    "compose runs `stepline {sub}`, which does not exist"
                );
            }
        }
        for (i, _) in line.match_indices("/examples/") {
            let file: String = line[i + "/examples/".len()..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"')
                .collect();
            assert!(
                root().join("examples").join(&file).exists(),
                "compose reads /examples/{file}, which is not in examples/"
            );
        }
    }
    let mut commands = 0;
    for line in compose.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("dockerfile:") {
            let path = root().join(rest.trim());
            assert!(
                path.exists(),
                "compose names a missing Dockerfile: {}",
                path.display()
            );
        }
        let array = line
            .strip_prefix("command:")
            .or_else(|| line.strip_prefix("test:"))
            .map(str::trim)
            .filter(|r| r.starts_with('['));
        let Some(array) = array else { continue };
        let argv: Vec<String> = serde_json::from_str(array)
            .unwrap_or_else(|e| panic!("unparsable compose array {array}: {e}"));
        let argv: Vec<&str> = argv
            .iter()
            .map(String::as_str)
            .skip_while(|a| *a == "CMD")
            .collect();
        match argv.first().copied() {
            Some("stepline") => {
                let sub = argv.get(1).copied().unwrap_or("");
                assert!(
                    subcommands.contains(&sub),
                    "compose runs `stepline {sub}`, which does not exist"
                );
                commands += 1;
            }
            Some(bin) if bin.ends_with("-worker") => {
                assert!(
                    bins.iter().any(|b| b == bin),
                    "compose runs {bin}, but examples/src/bin/{bin}.rs does not exist"
                );
                commands += 1;
            }
            _ => {} // the images' own tools (redis-cli, rabbitmq-diagnostics)
        }
    }
    assert!(
        commands >= 3,
        "expected the server, its health check and a worker in the compose file"
    );
}

/// `docker-compose config` (Debian's docker-compose, installed by `.ci/services`) validates the
/// compose file against the Compose schema: service keys, healthchecks, `depends_on`
/// conditions, volumes. No docker engine is needed for that.
#[test]
fn compose_file_passes_docker_compose_config() {
    let out = std::process::Command::new("docker-compose")
        .arg("-f")
        .arg(root().join("docker-compose.yml"))
        .args(["config", "-q"])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("docker-compose must be installed (.ci/services installs it): {e}")
        });
    assert!(
        out.status.success(),
        "docker-compose rejects docker-compose.yml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
