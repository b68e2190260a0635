//! Who is asking: every request and every connection carries a [`Principal`]; anonymous is one
//! too.

/// The identity a request or a connection acts as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    /// `None` for the anonymous principal.
    pub id: Option<String>,
    /// What the principal is (`admin`, `user`…), for policies: [`Principal::has_role`].
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    system: bool,
}

impl Principal {
    /// The principal of a request without a credential.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A signed-in user.
    pub fn user(id: impl Into<String>, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            id: Some(id.into()),
            roles: roles.into_iter().map(Into::into).collect(),
            system: false,
        }
    }

    /// The application itself (server-side code, jobs): no policy applies to it.
    pub fn system() -> Self {
        Self {
            id: None,
            roles: Vec::new(),
            system: true,
        }
    }

    /// Whether this is the anonymous principal (no id, not the system).
    pub fn is_anonymous(&self) -> bool {
        self.id.is_none() && !self.system
    }

    /// Whether this is the system: the application's own code, to which no policy applies.
    pub fn is_system(&self) -> bool {
        self.system
    }

    /// Whether the principal has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// A text form of everything the principal carries, its roles as a set (their order and
    /// repeats do not count): equal keys, equal principals. The default
    /// [`crate::Permissions::audience`] is built on it.
    ///
    /// ```
    /// use rest_live_core::Principal;
    ///
    /// let a = Principal::user("ann", ["admin", "user"]);
    /// assert_eq!(a.key(), Principal::user("ann", ["user", "admin", "user"]).key());
    /// assert_ne!(a.key(), Principal::user("ann", ["user"]).key());
    /// assert_eq!(Principal::anonymous().key(), Principal::anonymous().key());
    /// ```
    pub fn key(&self) -> String {
        let mut normal = self.clone();
        normal.roles.sort_unstable();
        normal.roles.dedup();
        // Serializing strings and booleans cannot fail; the debug form says as much, just as
        // uniquely.
        serde_json::to_string(&normal).unwrap_or_else(|_| format!("{normal:?}"))
    }
}
