//! The manifest format, its validation and the start order.

use pandagen_abi::device::{DeviceResource, InterruptLines, PortRange};
use pandagen_abi::{Budget, IdentityKind, Priority, ServiceId, TrustDomain};
use pandagen_process_manager::manifest::DEFAULT_BUDGET;
use pandagen_process_manager::{
    parse_manifest, CapabilityName, ManifestError, Readiness, RestartPolicy, SyntaxError,
    ValidationError,
};

fn names(text: &str) -> Vec<String> {
    parse_manifest(text.as_bytes())
        .unwrap()
        .start_order()
        .iter()
        .map(|d| d.name.clone())
        .collect()
}

fn error(text: &str) -> ManifestError {
    parse_manifest(text.as_bytes()).unwrap_err()
}

#[test]
fn a_full_entry_parses_into_a_descriptor() {
    let manifest = parse_manifest(
        b"# comment\n\
          [db]\nid = 10\n\
          [web]            # trailing comment\n\
          id = 11\n\
          image = web_server\n\
          restart = backoff:4\n\
          capabilities = registry, boot-image, serial-input, kernel-info, block-device, pm-control\n\
          depends = db\n\
          trust = sandbox\n\
          kind = component\n\
          priority = 3\n\
          ready = spawned\n\
          memory = 96K\n\
          frames = 2M\n",
    )
    .unwrap();
    let web = manifest.by_name("web").unwrap();
    assert_eq!(web.service_id, ServiceId::from_raw(11));
    assert_eq!(web.image, "web_server");
    assert_eq!(
        web.restart_policy,
        RestartPolicy::ExponentialBackoff { max_attempts: 4 }
    );
    assert_eq!(
        web.capabilities,
        [
            CapabilityName::Registry,
            CapabilityName::BootImage,
            CapabilityName::SerialInput,
            CapabilityName::KernelInfo,
            CapabilityName::BlockDevice,
            CapabilityName::PmControl,
        ]
    );
    assert_eq!(web.dependencies, [ServiceId::from_raw(10)]);
    assert_eq!(web.trust_domain, TrustDomain::sandbox());
    assert_eq!(web.kind, IdentityKind::Component);
    assert_eq!(web.priority, Priority(3));
    assert_eq!(web.readiness, Readiness::Spawned);
    assert_eq!(web.budget, Budget::new(96 << 10, 512));
    let db = manifest.by_name("db").unwrap();
    assert_eq!(db.budget, DEFAULT_BUDGET);
}

#[test]
fn defaults_are_documented_values() {
    let manifest = parse_manifest(b"[solo]\nid = 7\n").unwrap();
    let solo = manifest.get(ServiceId::from_raw(7)).unwrap();
    assert_eq!(solo.image, "solo");
    assert_eq!(solo.restart_policy, RestartPolicy::OnFailure);
    assert!(solo.capabilities.is_empty() && solo.dependencies.is_empty());
    assert_eq!(solo.trust_domain, TrustDomain::user());
    assert_eq!(solo.kind, IdentityKind::Service);
    assert_eq!(solo.priority, Priority::NORMAL);
    assert_eq!(solo.readiness, Readiness::Registered);
    assert_eq!(solo.budget, Budget::new(256 << 10, 4096));
}

#[test]
fn every_restart_policy_has_a_spelling() {
    for (text, policy) in [
        ("never", RestartPolicy::Never),
        ("always", RestartPolicy::Always),
        ("on-failure", RestartPolicy::OnFailure),
        (
            "backoff:0",
            RestartPolicy::ExponentialBackoff { max_attempts: 0 },
        ),
    ] {
        let manifest = parse_manifest(format!("[s]\nid=9\nrestart = {text}\n").as_bytes()).unwrap();
        assert_eq!(manifest.start_order()[0].restart_policy, policy);
    }
}

#[test]
fn dependencies_start_first_and_ties_keep_declaration_order() {
    // c depends on a; b has no deps; a depends on d.
    let order = names(
        "[c]\nid=13\ndepends=a\n\
         [b]\nid=12\n\
         [a]\nid=11\ndepends=d\n\
         [d]\nid=14\n",
    );
    assert_eq!(order, ["b", "d", "a", "c"]);
}

#[test]
fn a_diamond_starts_its_root_first_and_its_join_last() {
    let order = names(
        "[join]\nid=20\ndepends=left,right\n\
         [right]\nid=21\ndepends=root\n\
         [left]\nid=22\ndepends=root\n\
         [root]\nid=23\n",
    );
    assert_eq!(order, ["root", "right", "left", "join"]);
}

#[test]
fn the_order_is_the_same_every_time() {
    let text = "[x]\nid=10\ndepends=y\n[y]\nid=11\n[z]\nid=12\ndepends=y\n";
    let first = names(text);
    for _ in 0..10 {
        assert_eq!(names(text), first);
    }
}

#[test]
fn the_boot_manifest_is_valid_and_ordered() {
    let manifest = parse_manifest(include_bytes!("../manifests/system.manifest")).unwrap();
    let order: Vec<_> = manifest
        .start_order()
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "display",
            "pci",
            "virtio-blk",
            "storage",
            "transformer",
            "flaky-transformer",
            "pipeline-executor",
            "console",
            "keyboard"
        ]
    );
    // The keyboard driver holds exactly its controller: two single ports
    // and line 1, and reads boot.cfg without the right to spawn.
    let keyboard = manifest
        .start_order()
        .iter()
        .find(|d| d.name == "keyboard")
        .unwrap();
    assert_eq!(
        keyboard.capabilities,
        [
            CapabilityName::Registry,
            CapabilityName::BootFiles,
            CapabilityName::Device(DeviceResource::Ports(PortRange::new(0x60, 0x60))),
            CapabilityName::Device(DeviceResource::Ports(PortRange::new(0x64, 0x64))),
            CapabilityName::Device(DeviceResource::Interrupts(InterruptLines::one(1))),
        ]
    );
    // The display service holds the framebuffer and nothing else, and
    // nobody else holds it.
    for service in manifest.start_order() {
        let holds = service.capabilities.contains(&CapabilityName::Framebuffer);
        assert_eq!(holds, service.name == "display", "{}", service.name);
    }
    let display = manifest
        .start_order()
        .iter()
        .find(|d| d.name == "display")
        .unwrap();
    assert_eq!(display.capabilities, [CapabilityName::Framebuffer]);
}

#[test]
fn a_cycle_is_rejected_with_its_path() {
    let err = error("[a]\nid=11\ndepends=c\n[b]\nid=12\ndepends=a\n[c]\nid=13\ndepends=b\n");
    assert_eq!(
        err,
        ManifestError::Invalid(ValidationError::DependencyCycle(vec![
            "a".into(),
            "c".into(),
            "b".into(),
            "a".into()
        ]))
    );
    let err = error("[me]\nid=30\ndepends=me\n");
    assert_eq!(
        err,
        ManifestError::Invalid(ValidationError::DependencyCycle(vec![
            "me".into(),
            "me".into()
        ]))
    );
}

#[test]
fn a_missing_dependency_is_rejected_by_name() {
    assert_eq!(
        error("[a]\nid=10\ndepends=ghost\n"),
        ManifestError::UnknownService {
            service: "a".into(),
            named: "ghost".into()
        }
    );
}

#[test]
fn inconsistent_descriptors_are_rejected() {
    assert!(matches!(
        error("[a]\nid=10\n[b]\nid=10\n"),
        ManifestError::Invalid(ValidationError::DuplicateServiceId { .. })
    ));
    assert_eq!(
        error("[a]\nid=10\n[a]\nid=11\n"),
        ManifestError::Invalid(ValidationError::DuplicateName("a".into()))
    );
    assert_eq!(
        error("[pm]\nid=1\n"),
        ManifestError::Invalid(ValidationError::ReservedServiceId {
            service: "pm".into()
        })
    );
    let many = vec!["registry"; 17].join(",");
    assert!(matches!(
        error(&format!("[a]\nid=10\ncapabilities={many}\n")),
        ManifestError::Invalid(ValidationError::TooManyCapabilities { count: 17, .. })
    ));
}

#[test]
fn syntax_errors_name_the_line() {
    let cases: [(&str, u32, SyntaxError); 7] = [
        ("id = 3\n", 1, SyntaxError::KeyOutsideSection),
        ("[a]\nid = 3\nnonsense\n", 3, SyntaxError::MalformedLine),
        ("[a\n", 1, SyntaxError::MalformedLine),
        (
            "\n[Bad Name]\n",
            2,
            SyntaxError::InvalidServiceName("Bad Name".into()),
        ),
        (
            "[a]\nid=3\ncolour = red\n",
            3,
            SyntaxError::UnknownKey("colour".into()),
        ),
        (
            "[a]\nid=3\nid=4\n",
            3,
            SyntaxError::DuplicateKey("id".into()),
        ),
        (
            "[a]\nid=3\nrestart = sometimes\n",
            3,
            SyntaxError::BadValue {
                key: "restart".into(),
                value: "sometimes".into(),
            },
        ),
    ];
    for (text, line, expected) in cases {
        assert_eq!(
            error(text),
            ManifestError::Syntax {
                line,
                error: expected
            },
            "{text:?}"
        );
    }
}

#[test]
fn bad_values_are_rejected() {
    assert!(matches!(
        error("[a]\nid = -1\n"),
        ManifestError::Syntax {
            line: 2,
            error: SyntaxError::BadValue { .. }
        }
    ));
    for line in [
        "priority = 32",
        "ready = soon",
        "kind = daemon",
        "capabilities = root",
        "capabilities = channel:a",
        "restart = backoff:many",
        "image = ../etc",
        "memory = lots",
        "memory = 12G",
        "frames = -4K",
        "memory = 99999999999999999999M",
    ] {
        let text = format!("[a]\nid=5\n{line}\n");
        assert!(
            matches!(
                error(&text),
                ManifestError::Syntax {
                    error: SyntaxError::BadValue { .. },
                    ..
                }
            ),
            "{line}"
        );
    }
    assert_eq!(
        error("[a]\nimage=x\n"),
        ManifestError::MissingKey {
            service: "a".into(),
            key: "id"
        }
    );
    assert_eq!(
        parse_manifest(b"[a]\nid=\xff\n").unwrap_err(),
        ManifestError::NotText
    );
}

#[test]
fn an_empty_manifest_starts_nothing() {
    assert!(parse_manifest(b"# nothing here\n\n").unwrap().is_empty());
}
