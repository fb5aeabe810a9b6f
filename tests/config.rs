//! Config validation: one `tests/config/invalid-*.yml` per rule, each carrying
//! its expected message on a `# expect:` first line; plus the binary's exit
//! code and one-line output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use std::path::PathBuf;
use std::process::Command;

use crypto_market_exporter::config::{Cli, Config};

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/config")
}

#[test]
fn every_invalid_file_fails_with_its_message() {
    let mut checked = 0;
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("invalid-") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: no # expect: line"));
        let cli = Cli {
            config_file: Some(path.clone()),
            ..Cli::default()
        };
        let err = Config::from_cli(cli).expect_err(&name).to_string();
        assert!(
            err.contains(expect),
            "{name}: expected {expect:?} in {err:?}"
        );
        assert!(
            !err.contains('\n'),
            "{name}: message is not one line: {err:?}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} invalid configs found");
}

#[test]
fn example_config_is_valid() {
    let cli = Cli {
        config_file: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.example.yml")),
        ..Cli::default()
    };
    let c = Config::from_cli(cli).unwrap();
    assert_eq!(c.listen_address.to_string(), "0.0.0.0:9795");
}

#[test]
fn binary_exits_2_with_one_line_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
        .arg("--config.file")
        .arg(config_dir().join("invalid-duration.yml"))
        .env_remove("CRYPTO_MARKET_EXPORTER_POLL_INTERVAL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("poll.interval"), "{stderr}");

    // Flags are validated the same way, and name the flag.
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
        .arg("--web.listen-address=nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("--web.listen-address: invalid listen address \"nowhere\""),
        "{stderr}"
    );

    // Env vars too: flag > env > file.
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
        .env("CRYPTO_MARKET_EXPORTER_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("invalid log format \"xml\"")
    );
}
