//! Config validation: one `tests/config/invalid-*.yml` per rule, each carrying
//! its whole expected message on a `# expect:` first line (`UPDATE_EXPECT=1`
//! rewrites them); plus the binary's exit code and one-line output.

use std::path::PathBuf;
use std::process::Command;

use std::ffi::OsString;

use crypto_market_exporter::config::Config;

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/config")
}

/// The configuration a file gives, with no flags and no environment.
fn from_file(
    path: &std::path::Path,
) -> Result<Config, crypto_market_exporter::config::ConfigError> {
    Config::from_args_without_env([
        OsString::from("crypto-market-exporter"),
        OsString::from("--config.file"),
        path.into(),
    ])
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
        let err = from_file(&path).expect_err(&name).to_string();
        // The file's own path, as the checkout places it, reads as tests/config/.
        let err = err.replace(&config_dir().display().to_string(), "tests/config");
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            // Rewrites the `# expect:` line with the message as it now is; review
            // the diff (git diff tests/config).
            let rest = text.split_once('\n').map_or("", |(_, r)| r);
            std::fs::write(&path, format!("# expect: {err}\n{rest}")).unwrap();
        } else {
            // The whole message: what a user reads, word for word.
            assert_eq!(
                err, expect,
                "{name} (UPDATE_EXPECT=1 rewrites the expect lines)"
            );
        }
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
    let c =
        from_file(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.example.yml")).unwrap();
    assert_eq!(c.listen_address.to_string(), ":9795");
    // The file says "the values shown are the defaults": all of them are.
    let defaults = Config::from_args_without_env(["crypto-market-exporter"]).unwrap();
    assert_eq!(c, defaults, "config.example.yml differs from the defaults");
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.example.yml"),
    )
    .unwrap();
    assert_eq!(Config::from_yaml(&text).unwrap(), defaults);
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

/// Runs the binary with only the given flags and environment (no inherited
/// `CRYPTO_MARKET_EXPORTER_*`), and returns its exit code and stderr.
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CRYPTO_MARKET_EXPORTER_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.args(args).envs(env.iter().copied()).output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

/// An error names what the user set: the env var, the flag or the file key,
/// whichever the value came from (clap merges flags and env vars into one field).
#[test]
fn errors_name_the_flag_or_env_var_the_value_came_from() {
    // (flags, environment, expected message)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &[],
            &[("CRYPTO_MARKET_EXPORTER_LOG_LEVEL", "verbose")],
            "CRYPTO_MARKET_EXPORTER_LOG_LEVEL: invalid log level \"verbose\"",
        ),
        (
            &["--log.level=verbose"],
            &[],
            "--log.level: invalid log level \"verbose\"",
        ),
        (
            &["--poll.max-backoff=30s"],
            &[],
            "--poll.max-backoff: must be at least the poll interval (1m, the default), got 30s",
        ),
        (
            &[],
            &[("CRYPTO_MARKET_EXPORTER_POLL_MAX_BACKOFF", "30s")],
            "CRYPTO_MARKET_EXPORTER_POLL_MAX_BACKOFF: must be at least the poll interval",
        ),
        (
            &["--poll.max-backoff=1m"],
            &[("CRYPTO_MARKET_EXPORTER_POLL_INTERVAL", "5m")],
            "--poll.max-backoff: must be at least the poll interval (5m, set by CRYPTO_MARKET_EXPORTER_POLL_INTERVAL), got 1m",
        ),
        (
            &[],
            &[("CRYPTO_MARKET_EXPORTER_SOURCE", "nope")],
            "CRYPTO_MARKET_EXPORTER_SOURCE: unknown source \"nope\"",
        ),
        (
            &["--kraken.timeout=2s", "--kraken.connect-timeout=9s"],
            &[],
            "--kraken.connect-timeout: must not exceed the kraken timeout (2s)",
        ),
        (
            &[],
            &[("CRYPTO_MARKET_EXPORTER_KRAKEN_URL", "ftp://x")],
            "CRYPTO_MARKET_EXPORTER_KRAKEN_URL: invalid URL",
        ),
        (
            &[],
            &[("CRYPTO_MARKET_EXPORTER_WEB_LISTEN_ADDRESS", "localhost")],
            "CRYPTO_MARKET_EXPORTER_WEB_LISTEN_ADDRESS: invalid listen address \"localhost\": no port",
        ),
    ];
    for (args, env, expect) in cases {
        let (code, stderr) = run_binary(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(expect),
            "{args:?} {env:?}: expected {expect:?} in {stderr:?}"
        );
    }
}

#[test]
fn help_documents_the_healthcheck_subcommand() {
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("crypto-market-exporter healthcheck [OPTIONS]"),
        "{help}"
    );
    assert!(help.contains("healthcheck  Probe /-/healthy"), "{help}");
    assert!(help.contains("[default: kraken]"), "{help}");
}

/// `--web.config.file`: each invalid file fails with one line naming the key.
#[test]
fn invalid_web_configs_name_the_key() {
    let tls = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let tls = tls.display();
    let cases = [
        (
            "tls_server_config:\n  cert_file: x\n  ciphers: []\n",
            "unknown field `ciphers`",
        ),
        ("tls_config: {}\n", "unknown field `tls_config`"),
        (
            "tls_server_config:\n  key_file: /nope.key\n",
            "tls_server_config.cert_file: required for TLS",
        ),
        (
            "tls_server_config:\n  cert_file: /nonexistent/server.crt\n  key_file: /nonexistent/server.key\n",
            "tls_server_config.cert_file: /nonexistent/server.crt:",
        ),
        (
            &format!(
                "tls_server_config:\n  cert_file: {tls}/server.crt\n  key_file: {tls}/client.key\n"
            ),
            "tls_server_config: certificate and key do not match",
        ),
        (
            &format!(
                "tls_server_config:\n  cert_file: {tls}/server.crt\n  key_file: {tls}/server.key\n  min_version: TLS10\n"
            ),
            "tls_server_config.min_version: TLS10 is not supported",
        ),
        (
            &format!(
                "tls_server_config:\n  cert_file: {tls}/server.crt\n  key_file: {tls}/server.key\n  client_auth_type: RequireAndVerifyClientCert\n"
            ),
            "tls_server_config.client_ca_file: required with client_auth_type RequireAndVerifyClientCert",
        ),
        (
            &format!(
                "tls_server_config:\n  cert_file: {tls}/server.crt\n  key_file: {tls}/server.key\n  client_auth_type: Maybe\n"
            ),
            "tls_server_config.client_auth_type: unknown \"Maybe\"",
        ),
        (
            "basic_auth_users:\n  alice: plaintext\n",
            "basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            "http_server_config:\n  headers:\n    Set-Cookie: a=b\n",
            "http_server_config.headers: \"Set-Cookie\" cannot be set",
        ),
    ];
    let dir = std::env::temp_dir().join(format!("cme-webcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (body, expect)) in cases.iter().enumerate() {
        let path = dir.join(format!("web-{i}.yml"));
        std::fs::write(&path, body).unwrap();
        let err = Config::from_args_without_env([
            OsString::from("crypto-market-exporter"),
            OsString::from("--web.config.file"),
            path.clone().into(),
        ])
        .expect_err(body)
        .to_string();
        assert!(
            err.starts_with("--web.config.file: ") && err.contains(expect),
            "{body:?}: expected {expect:?} in {err:?}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--help` as users read it, word for word: every option, its env var and default.
/// A change to an option shows up here for review (`UPDATE_GOLDEN=1` rewrites it).
#[test]
fn help_matches_the_golden_file() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"));
    // clap shows an option's env var with its value when set.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CRYPTO_MARKET_EXPORTER_")) {
        cmd.env_remove(k);
    }
    let out = cmd.arg("--help").env("COLUMNS", "100").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/help.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &help).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert!(
        help == want,
        "--help differs from tests/golden/help.txt (UPDATE_GOLDEN=1 rewrites it):\n{help}"
    );
}

/// docs/configuration.md against the one declaration (clap's): every option has a row
/// with its env var and file key, and every row is an option. Options of every network
/// source are one `--<source>.…` row.
#[test]
fn configuration_doc_lists_every_option_as_declared() {
    use clap::CommandFactory;
    use crypto_market_exporter::config::options::Options;
    use crypto_market_exporter::settings::file_key;
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            l.split('|')
                .skip(1)
                .take(4)
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect();
    let sources = ["cryptowatch", "kraken", "binance", "coinbase"];
    let mut used = std::collections::BTreeSet::new();
    let mut checked = 0;
    for arg in Options::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        // Hidden: --<public source>.api-key-file, there only to be refused with a reason.
        if matches!(long, "help" | "version") || arg.is_hide_set() {
            continue;
        }
        let flag = format!("--{long}");
        let env = arg
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = file_key(long);
        // A network source's option is documented once, as --<source>.rest.
        let generic = sources.iter().find_map(|s| {
            let rest = long.strip_prefix(&format!("{s}."))?;
            let row = rows
                .iter()
                .position(|r| r[0] == format!("--<source>.{rest}"))?;
            Some((s, rest, row))
        });
        let (row, want_env, want_key) = match generic {
            Some((s, rest, row)) => {
                assert_eq!(
                    env,
                    rows[row][1].replace("<SOURCE>", &s.to_ascii_uppercase()),
                    "{flag}: env var"
                );
                (
                    row,
                    rows[row][1].clone(),
                    format!("<source>.{}", rest.replace('-', "_")),
                )
            }
            None => {
                let row = rows
                    .iter()
                    .position(|r| r[0] == flag)
                    .unwrap_or_else(|| panic!("{flag} is not in docs/configuration.md"));
                (row, env.clone(), key.clone())
            }
        };
        assert_eq!(rows[row][1], want_env, "{flag}: env var in the doc");
        if rows[row][2] != "—" {
            assert_eq!(rows[row][2], want_key, "{flag}: file key in the doc");
        }
        // A default --help states as a value is the doc's (per-source ones differ
        // between sources, and their row describes them).
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if let Some(default) = help_default(&help)
            && generic.is_none()
            && !default.contains(' ')
            && !rows[row][3].contains(default)
        {
            panic!(
                "{flag}: --help says [default: {default}], the doc {:?}",
                rows[row][3]
            );
        }
        used.insert(row);
        checked += 1;
    }
    let unused: Vec<&String> = (0..rows.len())
        .filter(|i| !used.contains(i))
        .map(|i| &rows[i][0])
        .collect();
    assert!(
        unused.is_empty(),
        "documented but not an option: {unused:?}"
    );
    assert!(checked >= 40, "only {checked} options");
}

/// The `[default: X]` an option's help states, if any.
fn help_default(help: &str) -> Option<&str> {
    help.split("[default: ").nth(1)?.split(']').next()
}

/// Every value `--help` states as a default is the default: giving it
/// explicitly yields the same configuration as not giving it. The defaults
/// are declared in code once; this keeps the help text honest about them.
#[test]
fn help_defaults_are_the_defaults() {
    use clap::CommandFactory;
    use crypto_market_exporter::config::options::Options;
    // Defaults described in words, not a value one could type.
    const DESCRIBED: [&str; 3] = [
        "all",
        "--poll.interval",
        "the larger of --poll.max-backoff and 10x the poll interval",
    ];
    let defaults = Config::from_args_without_env(["crypto-market-exporter"]).unwrap();
    let mut checked = 0;
    for arg in Options::command().get_arguments() {
        let (Some(long), Some(help)) = (arg.get_long(), arg.get_help()) else {
            continue;
        };
        let help = help.to_string();
        let Some(default) = help_default(&help) else {
            continue;
        };
        if DESCRIBED.contains(&default) {
            continue;
        }
        let given = Config::from_args_without_env([
            "crypto-market-exporter",
            &format!("--{long}={default}"),
        ])
        .unwrap_or_else(|e| panic!("--{long}: [default: {default}] is no value: {e}"));
        assert_eq!(
            given, defaults,
            "--{long}: [default: {default}] is not the default"
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} defaults checked");
}
