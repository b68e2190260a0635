//! Collects every error of one expansion, each spanned on the offending token, so that a user sees
//! all of them in one compile.

use std::cell::RefCell;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// The errors of one expansion. [`Ctxt::check`] must be called before it is dropped: a context
/// dropped with its errors unchecked is a bug in the macro (the errors would be lost), and it
/// panics, as serde_derive's does.
pub struct Ctxt {
    /// `None` once checked.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Self {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// An error at the tokens of `obj`.
    pub fn error_spanned_by<T: ToTokens, M: std::fmt::Display>(&self, obj: T, message: M) {
        self.syn_error(syn::Error::new_spanned(obj.into_token_stream(), message));
    }

    pub fn syn_error(&self, error: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt used after check()")
            .push(error);
    }

    /// All errors as `compile_error!` invocations, or `None` if there were none.
    pub fn check(self) -> Option<TokenStream> {
        let errors = self.errors.borrow_mut().take().expect("Ctxt checked twice");
        if errors.is_empty() {
            return None;
        }
        Some(errors.into_iter().map(|e| e.to_compile_error()).collect())
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("forgot to check for errors");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ctxt;

    #[test]
    fn checked_context_drops_quietly() {
        let cx = Ctxt::new();
        cx.syn_error(syn::Error::new(proc_macro2::Span::call_site(), "x"));
        assert!(cx.check().is_some());
        assert!(Ctxt::new().check().is_none());
    }

    #[test]
    #[should_panic(expected = "forgot to check for errors")]
    fn unchecked_context_panics() {
        let _cx = Ctxt::new();
    }
}
