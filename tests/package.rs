//! What the Debian package ships, checked without building it (.ci/package builds, installs,
//! runs and purges the real thing): the packaged unit is contrib's with only the package's path
//! and user changed, and the packaged config holds README's defaults.
use std::ffi::OsString;

use chatd::config::{file, ServerArgs};

const CONTRIB_UNIT: &str = include_str!("../contrib/chatd.service");
const DEBIAN_UNIT: &str = include_str!("../debian/chatd.service");

/// The unit's settings, without comments and blank lines.
fn settings(unit: &str) -> Vec<&str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn the_packaged_unit_is_contribs_with_the_packages_path_and_user() {
    let contrib = settings(CONTRIB_UNIT);
    let debian = settings(DEBIAN_UNIT);
    let expected: Vec<String> = contrib
        .iter()
        .flat_map(|line| match *line {
            "DynamicUser=yes" => vec!["User=chatd".to_string(), "Group=chatd".to_string()],
            l if l.starts_with("Description=") => vec![
                l.to_string(),
                "Documentation=man:chatd(1) file:///usr/share/doc/chatd/README.Debian".to_string(),
            ],
            l => vec![l.replace("/usr/local/bin/chatd", "/usr/bin/chatd")],
        })
        .collect();
    assert_eq!(debian, expected);
    // The state directory and the user agree with the sysusers file and the maintainer scripts.
    assert!(debian.contains(&"StateDirectory=chatd"));
    let sysusers = include_str!("../debian/chatd.sysusers");
    assert!(sysusers.contains("\nu chatd - "), "{sysusers}");
    assert!(sysusers.contains(" /var/lib/chatd "), "{sysusers}");
    assert!(include_str!("../debian/postinst").contains("-o chatd -g chatd -m 0700 /var/lib/chatd"));
    assert!(include_str!("../debian/postrm").contains("rm -rf /var/lib/chatd"));
}

#[test]
fn the_packaged_config_holds_readmes_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/chatd.toml");
    let cli = |args: &[&str]| -> Vec<OsString> {
        std::iter::once("chatd")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    };
    let installed = file::load(&cli(&["--config", path])).expect("the packaged config loads");
    // README: `chatd --tcp 9001 --udp 9001`, and the page on 8080.
    let readme: ServerArgs = "--tcp 9001 --udp 9001 --http 8080".parse().expect("args");
    assert_eq!(
        (installed.tcp, installed.udp, installed.http),
        (Some(9001), Some(9001), Some(8080))
    );
    // Everything else is what the flags default to (udp-validate auto: on, since the package
    // binds every address, so a UDP newcomer types back its code).
    assert_eq!(
        format!("{:?}", installed.config()),
        format!("{:?}", readme.config())
    );
    assert_eq!(installed.udp_validate, chatd::guard::cookie::Validate::Auto);
}

#[test]
fn the_container_runs_the_packages_command_line_and_config() {
    let dockerfile = include_str!("../contrib/Dockerfile");
    let exec_start = settings(DEBIAN_UNIT)
        .into_iter()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let expected = exec_start
        .replace("${STATE_DIRECTORY}", "/var/lib/chatd")
        .split_whitespace()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        dockerfile.contains(&format!("ENTRYPOINT [{expected}]")),
        "ENTRYPOINT is not the unit's ExecStart: [{expected}]"
    );
    assert!(dockerfile.contains("COPY contrib/chatd.toml /etc/chatd/chatd.toml"));
    assert!(dockerfile.contains("VOLUME [\"/etc/chatd\", \"/var/lib/chatd\"]"));
    assert!(dockerfile.contains("\nUSER chatd\n"));
    // The health check asks /healthz on the config's HTTP port.
    let config = include_str!("../contrib/chatd.toml");
    assert!(config.contains("\nhttp = 8080\n"));
    assert!(dockerfile.contains("/dev/tcp/127.0.0.1/8080") && dockerfile.contains("GET /healthz"));
}
