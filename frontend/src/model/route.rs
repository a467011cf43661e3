//! The app's pages and their paths. The server answers each of these paths
//! with the app, so a reload or a shared link lands on the same page.

/// A page of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Editor,
    Builds,
    Build(String),
    Team,
    Releases,
    Login,
    NotFound,
}

/// The paths the server must answer with the app (`{id}` any build id).
pub const PATHS: [&str; 6] = [
    "/",
    "/builds",
    "/builds/{id}",
    "/team",
    "/releases",
    "/login",
];

impl Route {
    pub fn parse(path: &str) -> Route {
        let path = path.trim_end_matches('/');
        match path {
            "" => Route::Editor,
            "/builds" => Route::Builds,
            "/team" => Route::Team,
            "/releases" => Route::Releases,
            "/login" => Route::Login,
            _ => match path.strip_prefix("/builds/") {
                Some(id) if valid_id(id) => Route::Build(id.to_owned()),
                _ => Route::NotFound,
            },
        }
    }

    pub fn path(&self) -> String {
        match self {
            Route::Editor => "/".into(),
            Route::Builds => "/builds".into(),
            Route::Build(id) => format!("/builds/{id}"),
            Route::Team => "/team".into(),
            Route::Releases => "/releases".into(),
            Route::Login => "/login".into(),
            Route::NotFound => "/404".into(),
        }
    }

    /// The page title, for the document and the navigation.
    pub fn title(&self) -> &'static str {
        match self {
            Route::Editor => "Editor",
            Route::Builds => "Builds",
            Route::Build(_) => "Build",
            Route::Team => "Team",
            Route::Releases => "Releases",
            Route::Login => "Log in",
            Route::NotFound => "Not found",
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for r in [
            Route::Editor,
            Route::Builds,
            Route::Build("0193abc-12".into()),
            Route::Team,
            Route::Releases,
            Route::Login,
        ] {
            assert_eq!(Route::parse(&r.path()), r);
        }
        assert_eq!(Route::parse("/builds/"), Route::Builds);
        assert_eq!(Route::parse("/builds/a/b"), Route::NotFound);
        assert_eq!(Route::parse("/builds/../x"), Route::NotFound);
        assert_eq!(Route::parse("/nope"), Route::NotFound);
    }
}
