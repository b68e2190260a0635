//! Every `#[resource]` submits a [`Registration`] through `inventory`; the [`Registry`] collects
//! them once at start-up, in a stable order, and refuses an inconsistent set.
//!
//! # Registrations that vanish
//! The linker keeps a crate's registrations only if the final binary (or test) names that crate.
//! When your resources live in a crate (or your package's `lib.rs`) that `main.rs` never mentions,
//! either name it (`use my_models as _;`) or register the types explicitly with
//! [`crate::AppBuilder::register`]; [`crate::AppBuilder::expect_streams`] turns a missing stream
//! into a start-up error instead of a silent 404.

use std::collections::BTreeMap;

use rest_live_names::{BUILT_IN_ACTIONS, check_stream_name};

use crate::error::Error;
use crate::jobs::{JOBS_BINDING, JOBS_STREAM, JobBinding, JobRegistration};
use crate::resource::action::{ActionBinding, ActionRegistration};
use crate::resource::binding::Binding;

/// One resource, as submitted by generated code.
pub struct Registration {
    /// The resource's binding.
    pub binding: &'static dyn Binding,
}

inventory::collect!(Registration);

/// Stream name → resource, built once; and the declared jobs.
pub struct Registry {
    by_stream: BTreeMap<&'static str, &'static dyn Binding>,
    jobs: Vec<&'static dyn JobBinding>,
    /// Custom actions by (stream, name).
    actions: BTreeMap<(&'static str, &'static str), &'static dyn ActionBinding>,
}

impl Registry {
    /// Collects every submitted registration plus `explicit` ones (a type registered both ways
    /// counts once) and checks them.
    pub fn collect(
        explicit: &[&'static dyn Binding],
        explicit_jobs: &[&'static dyn JobBinding],
    ) -> Result<Self, Error> {
        let mut all: Vec<&'static dyn Binding> = inventory::iter::<Registration>
            .into_iter()
            .map(|r| r.binding)
            .chain(explicit.iter().copied())
            .collect();
        all.sort_by_key(|b| (b.meta().stream, b.meta().type_name));
        all.dedup_by(|a, b| a.type_id() == b.type_id());
        let mut registry = Self::from_bindings(all)?;
        let mut jobs: Vec<&'static dyn JobBinding> = inventory::iter::<JobRegistration>
            .into_iter()
            .map(|r| r.job)
            .chain(explicit_jobs.iter().copied())
            .collect();
        jobs.sort_by_key(|j| (j.resource().meta().stream, j.name()));
        jobs.dedup_by(|a, b| {
            a.resource().meta().stream == b.resource().meta().stream && a.name() == b.name()
        });
        let mut problems = Vec::new();
        for job in &jobs {
            let stream = job.resource().meta().stream;
            let name = job.name();
            if registry.get(stream).is_none() {
                problems.push(format!(
                    "job {name:?} is declared on stream {stream:?}, which is not registered"
                ));
            }
            if BUILT_IN_ACTIONS.contains(&name) || check_stream_name(name).is_some() {
                problems.push(format!(
                    "job {name:?} on stream {stream:?}: a job name must be ASCII letters, digits, '_' or '-', and not a built-in action"
                ));
            }
        }
        let actions = Self::actions(&registry, &jobs, &mut problems);
        if !problems.is_empty() {
            return Err(Error::Registry(problems.join("; ")));
        }
        registry.jobs = jobs;
        registry.actions = actions;
        // The built-in stream of job states.
        registry.by_stream.insert(JOBS_STREAM, &JOBS_BINDING);
        Ok(registry)
    }

    /// The declared jobs.
    pub fn jobs(&self) -> &[&'static dyn JobBinding] {
        &self.jobs
    }

    /// Collects the custom actions (`#[actions]`) and checks them: each on a registered stream,
    /// and one name per stream among its actions and jobs (an action declared twice with one name,
    /// in two `impl` blocks, or an action and a job of one name, names both declarations).
    fn actions(
        registry: &Registry,
        jobs: &[&'static dyn JobBinding],
        problems: &mut Vec<String>,
    ) -> BTreeMap<(&'static str, &'static str), &'static dyn ActionBinding> {
        let mut all: Vec<&'static dyn ActionBinding> = inventory::iter::<ActionRegistration>
            .into_iter()
            .map(|r| r.action)
            .collect();
        all.sort_by_key(|a| (a.resource().meta().stream, a.name(), a.location()));
        let mut by_name: BTreeMap<(&'static str, &'static str), &'static dyn ActionBinding> =
            BTreeMap::new();
        for action in all {
            let meta = action.resource().meta();
            let (stream, name) = (meta.stream, action.name());
            let here = format!(
                "action `{name}` of {} ({})",
                meta.type_name,
                action.location()
            );
            if registry.get(stream).is_none() {
                // Its resource is not served (not registered, or vanished): nor is the action.
                continue;
            }
            if BUILT_IN_ACTIONS.contains(&name) || check_stream_name(name).is_some() {
                problems.push(format!(
                    "{here}: an action name must be ASCII letters, digits, '_' or '-', and not a built-in action"
                ));
                continue;
            }
            if let Some(first) = by_name.get(&(stream, name)) {
                if first.location() != action.location() {
                    problems.push(format!(
                        "stream {stream:?} declares the action `{name}` twice: {} and {}",
                        first.location(),
                        action.location()
                    ));
                }
                continue;
            }
            if let Some(job) = jobs
                .iter()
                .find(|j| j.resource().meta().stream == stream && j.name() == name)
            {
                problems.push(format!(
                    "stream {stream:?} has a job and an action both named `{name}`: {here} and the job {}",
                    job.type_name()
                ));
                continue;
            }
            by_name.insert((stream, name), action);
        }
        by_name
    }

    /// The custom action `name` of `stream`, if declared.
    pub fn action(&self, stream: &str, name: &str) -> Option<&'static dyn ActionBinding> {
        self.actions
            .iter()
            .find(|((s, n), _)| *s == stream && *n == name)
            .map(|(_, a)| *a)
    }

    /// Every custom action, by stream and name.
    pub fn custom_actions(&self) -> impl Iterator<Item = &'static dyn ActionBinding> + '_ {
        self.actions.values().copied()
    }

    fn from_bindings(all: Vec<&'static dyn Binding>) -> Result<Self, Error> {
        let mut problems = Vec::new();
        let mut by_stream: BTreeMap<&'static str, &'static dyn Binding> = BTreeMap::new();
        for binding in all {
            let meta = binding.meta();
            if let Some(problem) = check_stream_name(meta.stream) {
                problems.push(format!("{} ({}): {problem}", meta.type_name, meta.location));
                continue;
            }
            if let Some(first) = by_stream.get(meta.stream) {
                let first = first.meta();
                problems.push(format!(
                    "stream {:?} is declared twice: by {} ({}) and by {} ({})",
                    meta.stream, first.type_name, first.location, meta.type_name, meta.location
                ));
                continue;
            }
            by_stream.insert(meta.stream, binding);
        }
        if problems.is_empty() {
            Ok(Self {
                by_stream,
                jobs: Vec::new(),
                actions: BTreeMap::new(),
            })
        } else {
            Err(Error::Registry(problems.join("; ")))
        }
    }

    pub fn get(&self, stream: &str) -> Option<&'static dyn Binding> {
        self.by_stream.get(stream).copied()
    }

    /// Every resource, ordered by stream name.
    pub fn iter(&self) -> impl Iterator<Item = &'static dyn Binding> + '_ {
        self.by_stream.values().copied()
    }

    pub fn streams(&self) -> Vec<&'static str> {
        self.by_stream.keys().copied().collect()
    }

    /// The resource a model label names (`#[resource(label = "…")]`), for the django-rest-live
    /// format; labels are checked to be distinct at start-up when that endpoint is on.
    pub fn by_label(&self, label: &str) -> Option<&'static dyn Binding> {
        self.iter().find(|b| b.meta().label == label)
    }

    /// Refuses model labels shared by several resources (clients name resources by label in the
    /// django-rest-live format, so such a label would name nothing reliably).
    pub fn check_labels(&self) -> Result<(), Error> {
        let mut by_label: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
        for binding in self.iter() {
            let meta = binding.meta();
            by_label.entry(meta.label).or_default().push(meta.stream);
        }
        let problems: Vec<String> = by_label
            .into_iter()
            .filter(|(_, streams)| streams.len() > 1)
            .map(|(label, streams)| {
                format!(
                    "model label {label:?} names several resources ({}): give them distinct #[resource(label = \"…\")], or turn the django-rest-live endpoint off (Config::drl_path = None)",
                    streams.join(", ")
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Registry(problems.join("; ")))
        }
    }
}
