//! The README's redis-cli walk-through, run line by line against a real server: every
//! command and every reply exactly as written (times stamped by the clock aside).

use std::process::Command;

use redsink_tests::{workspace_dir, RedisServer};

/// `2026-11-21T19:47:48.019Z` → `<time>`, for records stamped by the server clock.
fn without_clock_times(text: &str) -> String {
    let bytes = text.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let candidate = &bytes[i..(i + shape.len()).min(bytes.len())];
        let is_time = candidate.len() == shape.len()
            && candidate.iter().zip(shape).all(|(&c, &s)| {
                if s == b'd' {
                    c.is_ascii_digit()
                } else {
                    c == s
                }
            });
        if is_time {
            out.push_str("<time>");
            i += shape.len();
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    out
}

#[test]
fn the_readme_walk_throughs_work_as_written() {
    let readme = std::fs::read_to_string(workspace_dir().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```console\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() >= 2, "the README has its console blocks");
    let server = RedisServer::start();
    let mut steps = 0;
    for block in blocks {
        let mut lines = block.lines().peekable();
        while let Some(line) = lines.next() {
            let command = line.strip_prefix("$ ").expect("each step starts with '$ '");
            let command = command.split("  #").next().unwrap().trim_end();
            let mut expected = Vec::new();
            while let Some(reply) = lines.next_if(|next| !next.starts_with("$ ")) {
                expected.push(reply);
            }
            let shell = command.replacen(
                "redis-cli",
                &format!("redis-cli --no-raw -p {}", server.port()),
                1,
            );
            let output = Command::new("bash")
                .args(["-c", &shell])
                .output()
                .expect("run redis-cli");
            let got = String::from_utf8_lossy(&output.stdout);
            // Documented times stand for whatever the clock said (exact TS stamping is
            // checked in ds_commands).
            assert_eq!(
                without_clock_times(got.trim_end()),
                without_clock_times(&expected.join("\n")),
                "README step: {command}"
            );
            steps += 1;
        }
    }
    assert!(steps >= 18, "the walk-throughs have {steps} steps");
}
