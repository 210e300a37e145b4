//! Whole-manifest validation and the start order.
//!
//! A manifest is accepted only if every service id and name is unique, no
//! service claims the process manager's own id, every dependency exists,
//! no service asks for more capabilities than a task may receive at spawn, and the
//! dependency graph has no cycle. All of this is checked before anything
//! starts.
//!
//! The start order is a topological order of the dependency graph. It is
//! deterministic: among the services whose dependencies have all been
//! placed, the one declared first in the manifest goes next.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use pandagen_abi::api::limits::MAX_SPAWN_CAPS;
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::ServiceId;

use crate::descriptor::ServiceDescriptor;

/// Why a set of descriptors is not a runnable manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValidationError {
    DuplicateName(String),
    DuplicateServiceId {
        service_id: ServiceId,
        first: String,
        second: String,
    },
    /// The process manager's own id cannot be given to a managed service.
    ReservedServiceId {
        service: String,
    },
    MissingDependency {
        service: String,
        dependency: ServiceId,
    },
    /// A dependency cycle, as the path of names around it (the first name
    /// repeated at the end): `["a", "b", "a"]`.
    DependencyCycle(Vec<String>),
    TooManyCapabilities {
        service: String,
        count: usize,
        max: usize,
    },
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationError::DuplicateName(name) => write!(f, "service {name} is declared twice"),
            ValidationError::DuplicateServiceId {
                service_id,
                first,
                second,
            } => write!(f, "{first} and {second} both use {service_id}"),
            ValidationError::ReservedServiceId { service } => {
                write!(f, "{service} uses the process manager's service id")
            }
            ValidationError::MissingDependency {
                service,
                dependency,
            } => write!(
                f,
                "{service} depends on {dependency}, which is not declared"
            ),
            ValidationError::DependencyCycle(path) => {
                f.write_str("dependency cycle: ")?;
                for (i, name) in path.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" -> ")?;
                    }
                    f.write_str(name)?;
                }
                Ok(())
            }
            ValidationError::TooManyCapabilities {
                service,
                count,
                max,
            } => write!(f, "{service} asks for {count} capabilities; at most {max}"),
        }
    }
}

/// A validated manifest: its services in start order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    ordered: Vec<ServiceDescriptor>,
}

impl Manifest {
    /// The services in the order they are started.
    pub fn start_order(&self) -> &[ServiceDescriptor] {
        &self.ordered
    }

    pub fn get(&self, service_id: ServiceId) -> Option<&ServiceDescriptor> {
        self.ordered.iter().find(|d| d.service_id == service_id)
    }

    pub fn by_name(&self, name: &str) -> Option<&ServiceDescriptor> {
        self.ordered.iter().find(|d| d.name == name)
    }

    pub fn len(&self) -> usize {
        self.ordered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }
}

/// Validate `declared` (in manifest order) and compute the start order.
pub fn validate(declared: Vec<ServiceDescriptor>) -> Result<Manifest, ValidationError> {
    let mut index_of: BTreeMap<ServiceId, usize> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for (index, service) in declared.iter().enumerate() {
        if !names.insert(service.name.as_str()) {
            return Err(ValidationError::DuplicateName(service.name.clone()));
        }
        if service.service_id == PROCESS_MANAGER {
            return Err(ValidationError::ReservedServiceId {
                service: service.name.clone(),
            });
        }
        if let Some(first) = index_of.insert(service.service_id, index) {
            return Err(ValidationError::DuplicateServiceId {
                service_id: service.service_id,
                first: declared[first].name.clone(),
                second: service.name.clone(),
            });
        }
    }
    for service in &declared {
        if service.capabilities.len() > MAX_SPAWN_CAPS {
            return Err(ValidationError::TooManyCapabilities {
                service: service.name.clone(),
                count: service.capabilities.len(),
                max: MAX_SPAWN_CAPS,
            });
        }
        for dependency in &service.dependencies {
            if !index_of.contains_key(dependency) {
                return Err(ValidationError::MissingDependency {
                    service: service.name.clone(),
                    dependency: *dependency,
                });
            }
        }
    }
    let edges: Vec<Vec<usize>> = declared
        .iter()
        .map(|s| s.dependencies.iter().map(|d| index_of[d]).collect())
        .collect();
    if let Some(cycle) = find_cycle(&edges) {
        let path = cycle
            .into_iter()
            .map(|i| declared[i].name.clone())
            .collect();
        return Err(ValidationError::DependencyCycle(path));
    }
    let order = topological_order(&edges);
    let mut slots: Vec<Option<ServiceDescriptor>> = declared.into_iter().map(Some).collect();
    let ordered = order.into_iter().filter_map(|i| slots[i].take()).collect();
    Ok(Manifest { ordered })
}

/// The first cycle a depth-first search in declaration order meets, as a
/// closed path of node indices.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; edges.len()];
    for root in 0..edges.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // An explicit stack of (node, next edge to follow) keeps deep
        // manifests from overflowing a small ring-3 stack.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&target) = edges[node].get(*next) {
                *next += 1;
                match marks[target] {
                    Mark::New => {
                        marks[target] = Mark::OnPath;
                        path.push((target, 0));
                    }
                    Mark::OnPath => {
                        let start = path.iter().position(|(n, _)| *n == target)?;
                        let mut cycle: Vec<usize> = path[start..].iter().map(|(n, _)| *n).collect();
                        cycle.push(target);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

/// Kahn's algorithm, always taking the earliest-declared ready node.
/// `edges[i]` lists the dependencies of node `i`; the graph is acyclic.
fn topological_order(edges: &[Vec<usize>]) -> Vec<usize> {
    let mut remaining: Vec<usize> = edges
        .iter()
        .map(|deps| deps.iter().collect::<BTreeSet<_>>().len())
        .collect();
    let mut dependents: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); edges.len()];
    for (node, deps) in edges.iter().enumerate() {
        for &dep in deps {
            dependents[dep].insert(node);
        }
    }
    let mut ready: BTreeSet<usize> = (0..edges.len()).filter(|&n| remaining[n] == 0).collect();
    let mut order = Vec::with_capacity(edges.len());
    while let Some(node) = ready.pop_first() {
        order.push(node);
        for &dependent in &dependents[node] {
            remaining[dependent] -= 1;
            if remaining[dependent] == 0 {
                ready.insert(dependent);
            }
        }
    }
    order
}
