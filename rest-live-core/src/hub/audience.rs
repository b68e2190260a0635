//! Audiences: principals that see the same objects the same way, so that one visibility check and
//! one encoding of a change serve all of them.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use serde_json::{Map, Value};

use crate::auth::Principal;
use crate::resource::binding::Binding;
use crate::store::changelog::{Change, ChangeAction};

/// A change's rows, parsed once: the old one (none for a create) and the new one (none for a
/// delete).
pub(super) struct Rows {
    pub(super) old: Option<Map<String, Value>>,
    pub(super) new: Option<Map<String, Value>>,
}

impl Rows {
    pub(super) fn of(change: &Change) -> Self {
        let parse = |json: Option<&str>| json.and_then(|j| serde_json::from_str(j).ok());
        let old = match change.action {
            ChangeAction::Create => None,
            ChangeAction::Update => parse(change.old_row.as_deref()),
            ChangeAction::Delete => parse(Some(&change.row)),
        };
        let new = match change.action {
            ChangeAction::Delete => None,
            _ => parse(Some(&change.row)),
        };
        Self { old, new }
    }
}

/// The data an event of `action` carries for `change` (unrestricted audiences).
pub fn event_data(change: &Change, action: ChangeAction) -> std::borrow::Cow<'_, str> {
    match action {
        ChangeAction::Delete => format!("{{\"pk\":{}}}", change.pk).into(),
        _ => change.row.as_str().into(),
    }
}

/// The audiences in use, by resource and key (see [`Audience::new`]). Entries whose audience is
/// gone are dropped whenever the map has doubled since the last sweep.
static INTERNED: LazyLock<Mutex<Interned>> = LazyLock::new(|| {
    Mutex::new(Interned {
        map: HashMap::new(),
        live: 0,
    })
});

struct Interned {
    /// By resource (its type: bindings are zero-sized, so their addresses may coincide) and key.
    map: HashMap<(std::any::TypeId, String), Weak<Audience>>,
    /// Entries left after the last sweep.
    live: usize,
}

/// Principals that see the same objects the same way (see `Permissions::audience`): one
/// visibility check and one encoding per change serve every subscriber of an audience.
pub struct Audience {
    /// Principals with equal keys are checked and encoded for together.
    pub key: String,
    /// A representative principal of the audience.
    pub principal: Principal,
    /// The stream's resource.
    pub binding: &'static dyn Binding,
    restricted: bool,
}

impl Audience {
    /// The audience of `principal` on `binding`'s stream.
    pub fn new(binding: &'static dyn Binding, principal: &Principal) -> Arc<Self> {
        let restricted = binding.restricted() && !principal.is_system();
        // Everyone unrestricted gets the change as recorded, so they are one audience; the policy
        // keys the others, under a prefix that keeps any key it makes up apart from that one.
        let key = if restricted {
            format!("policy:{}", binding.audience(principal))
        } else {
            "*".to_owned()
        };
        // One `Audience` per (resource, key) while any subscriber holds it, so that the hub tells
        // two subscribers' audiences apart by address, without reading either key, for each
        // delivery.
        let mut interned = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (binding.type_id(), key);
        if let Some(audience) = interned.map.get(&slot).and_then(Weak::upgrade) {
            return audience;
        }
        let audience = Arc::new(Self {
            key: slot.1.clone(),
            principal: principal.clone(),
            binding,
            restricted,
        });
        interned.map.insert(slot, Arc::downgrade(&audience));
        if interned.map.len() > 2 * interned.live + 64 {
            interned.map.retain(|_, weak| weak.strong_count() > 0);
            interned.live = interned.map.len();
        }
        audience
    }

    /// What this audience gets for `change`, given the event its subscription alone would get
    /// (`base`): the object must be readable. Something readable that stops being readable is a
    /// `delete` with just the pk; something that becomes readable is a `create`.
    pub fn event<'c>(
        &self,
        change: &'c Change,
        base: ChangeAction,
    ) -> Option<(ChangeAction, std::borrow::Cow<'c, str>)> {
        if !self.restricted {
            return Some((base, event_data(change, base)));
        }
        let rows = Rows::of(change);
        self.event_of(change, base, &rows)
    }

    /// [`Audience::event`], with the change's rows already parsed.
    pub(super) fn event_of<'c>(
        &self,
        change: &'c Change,
        base: ChangeAction,
        rows: &Rows,
    ) -> Option<(ChangeAction, std::borrow::Cow<'c, str>)> {
        if !self.restricted {
            return Some((base, event_data(change, base)));
        }
        let (old, new) = (&rows.old, &rows.new);
        let seen = |o: &Option<Map<String, Value>>| {
            o.as_ref()
                .is_some_and(|o| self.binding.visible(&self.principal, o))
        };
        let (was, is) = (seen(old), seen(new));
        let action = match base {
            ChangeAction::Create => is.then_some(ChangeAction::Create)?,
            ChangeAction::Delete => was.then_some(ChangeAction::Delete)?,
            ChangeAction::Update => match (was, is) {
                (true, true) => ChangeAction::Update,
                (true, false) => ChangeAction::Delete,
                (false, true) => ChangeAction::Create,
                (false, false) => return None,
            },
        };
        if action == ChangeAction::Delete {
            return Some((action, event_data(change, action)));
        }
        let mut object = new.clone()?;
        self.binding.present(&self.principal, &mut object);
        Some((action, Value::Object(object).to_string().into()))
    }

    /// Whether this audience may read `object` (a row of the change log).
    pub fn sees(&self, object: &Map<String, Value>) -> bool {
        !self.restricted || self.binding.visible(&self.principal, object)
    }

    /// The object of `change` as this audience sees it (JSON text), given its parsed `object`
    /// (the change's new row).
    pub fn data_of(&self, change: &Change, object: &Map<String, Value>) -> Arc<str> {
        if !self.restricted {
            return Arc::from(change.row.as_str());
        }
        let mut object = object.clone();
        self.binding.present(&self.principal, &mut object);
        Arc::from(Value::Object(object).to_string())
    }

    /// [`Audience::event`], where a deletion carries the object as this audience last saw it
    /// (its old version, which it could read) when `full_deletes`, not only its pk (see
    /// [`super::EventEncoder::full_deletes`]).
    pub fn event_in<'c>(
        &self,
        change: &'c Change,
        base: ChangeAction,
        full_deletes: bool,
    ) -> Option<(ChangeAction, std::borrow::Cow<'c, str>)> {
        let (action, data) = self.event(change, base)?;
        if action != ChangeAction::Delete || !full_deletes {
            return Some((action, data));
        }
        let old = match change.action {
            ChangeAction::Delete => Some(change.row.as_str()),
            ChangeAction::Update => change.old_row.as_deref(),
            ChangeAction::Create => None,
        };
        let Some(old) = old else {
            return Some((action, data));
        };
        if !self.restricted {
            return Some((action, old.into()));
        }
        match serde_json::from_str::<Map<String, Value>>(old) {
            Ok(mut object) => {
                self.binding.present(&self.principal, &mut object);
                Some((action, Value::Object(object).to_string().into()))
            }
            Err(_) => Some((action, data)),
        }
    }
}
