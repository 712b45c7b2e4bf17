//! Who is logged in, shared by every page: the principal the server answered to
//! `POST /api/login` or `GET /api/me`. Pages hide what the role may not do (the server
//! refuses it anyway).

use antares_schemas::access::{Principal, Role};
use leptos::prelude::*;

/// The logged-in principal, `None` until known.
#[derive(Clone, Copy, Debug)]
pub struct Session(pub RwSignal<Option<Principal>>);

impl Session {
    /// Whether the principal's role includes `role`.
    pub fn can(&self, role: Role) -> bool {
        self.0
            .with(|p| p.as_ref().is_some_and(|p| p.role.allows(role)))
    }
}

/// The session of the app (provided by [`crate::app::App`]).
pub fn use_session() -> Session {
    expect_context::<Session>()
}
