//! The sign-in a page hands guestgate after its customer signed in with the site's identity
//! provider: the authorization code and the PKCE verifier or nonce it used. All are single-use
//! credentials; they are redacted in `Debug` and never logged.

use crate::secret::Secret;

/// What the page hands over after signing in with the identity provider.
#[derive(Clone, PartialEq, Eq)]
pub struct SignInCode {
    /// The authorization code (single use).
    pub code: Secret,
    /// The PKCE verifier, when the page used PKCE.
    pub code_verifier: Option<Secret>,
    /// The OIDC nonce, when the page used one.
    pub nonce: Option<String>,
}

impl std::fmt::Debug for SignInCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInCode").finish_non_exhaustive()
    }
}
