//! Who is asking: every request and every connection carries a [`Principal`]; anonymous is one
//! too.

/// The identity a request or a connection acts as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    /// `None` for the anonymous principal.
    pub id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    system: bool,
}

impl Principal {
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

    pub fn is_anonymous(&self) -> bool {
        self.id.is_none() && !self.system
    }

    pub fn is_system(&self) -> bool {
        self.system
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}
