//! Property tests of validation and the start order over random graphs.

use std::collections::BTreeMap;

use pandagen_abi::{IdentityKind, Priority, ServiceId, TrustDomain};
use pandagen_process_manager::validate::validate;
use pandagen_process_manager::{Readiness, RestartPolicy, ServiceDescriptor, ValidationError};
use proptest::prelude::*;

fn descriptor(index: usize, dependencies: &[usize]) -> ServiceDescriptor {
    ServiceDescriptor {
        service_id: ServiceId::from_raw(100 + index as u64),
        name: format!("s{index}"),
        image: format!("s{index}"),
        restart_policy: RestartPolicy::OnFailure,
        capabilities: Vec::new(),
        dependencies: dependencies
            .iter()
            .map(|d| ServiceId::from_raw(100 + *d as u64))
            .collect(),
        trust_domain: TrustDomain::user(),
        kind: IdentityKind::Service,
        priority: Priority::NORMAL,
        readiness: Readiness::Registered,
        budget: pandagen_process_manager::manifest::DEFAULT_BUDGET,
        driver: None,
    }
}

/// A random DAG over up to 11 nodes: each node depends on a few nodes of
/// lower rank in a hidden random order, so declaration order and
/// dependency order are unrelated.
fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..12).prop_flat_map(|n| {
        (
            Just(n),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            proptest::collection::vec(
                proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
                n,
            ),
        )
            .prop_map(|(n, rank, picks)| {
                // rank[i] = position of node i in a hidden topological order.
                (0..n)
                    .map(|i| {
                        let lower: Vec<usize> = (0..n).filter(|&j| rank[j] < rank[i]).collect();
                        let mut deps: Vec<usize> = if lower.is_empty() {
                            Vec::new()
                        } else {
                            picks[i]
                                .iter()
                                .map(|p| lower[p.index(lower.len())])
                                .collect()
                        };
                        deps.sort();
                        deps.dedup();
                        deps
                    })
                    .collect()
            })
    })
}

proptest! {
    #[test]
    fn every_acyclic_manifest_starts_dependencies_first(graph in dag()) {
        let declared: Vec<_> = graph.iter().enumerate().map(|(i, d)| descriptor(i, d)).collect();
        let manifest = validate(declared.clone()).expect("a DAG is valid");
        let order = manifest.start_order();
        prop_assert_eq!(order.len(), graph.len());
        let position: BTreeMap<ServiceId, usize> =
            order.iter().enumerate().map(|(p, d)| (d.service_id, p)).collect();
        for service in order {
            for dependency in &service.dependencies {
                prop_assert!(position[dependency] < position[&service.service_id]);
            }
        }
        // Deterministic: the same input gives the same order.
        prop_assert_eq!(validate(declared).unwrap(), manifest);
    }

    #[test]
    fn a_back_edge_makes_a_cycle_that_is_reported_as_one(graph in dag(), pick in any::<prop::sample::Index>()) {
        // Take any edge a -> b and add b -> a.
        let edges: Vec<(usize, usize)> = graph
            .iter()
            .enumerate()
            .flat_map(|(a, deps)| deps.iter().map(move |&b| (a, b)))
            .collect();
        prop_assume!(!edges.is_empty());
        let (a, b) = edges[pick.index(edges.len())];
        let mut cyclic = graph.clone();
        cyclic[b].push(a);
        let declared: Vec<_> = cyclic.iter().enumerate().map(|(i, d)| descriptor(i, d)).collect();
        match validate(declared) {
            Err(ValidationError::DependencyCycle(path)) => {
                prop_assert!(path.len() >= 3);
                prop_assert_eq!(path.first(), path.last());
                // Consecutive names are real dependency edges.
                let index = |name: &str| name[1..].parse::<usize>().unwrap();
                for pair in path.windows(2) {
                    prop_assert!(cyclic[index(&pair[0])].contains(&index(&pair[1])));
                }
            }
            other => prop_assert!(false, "expected a cycle, got {:?}", other),
        }
    }
}
