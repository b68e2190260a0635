//! Who is asking. Every request and every connection carries a [`Principal`]; anonymous is one too.

/// The identity a request or a connection acts as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// `None` for the anonymous principal.
    pub id: Option<String>,
    pub roles: Vec<String>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn is_anonymous(&self) -> bool {
        self.id.is_none()
    }
}
