//! The shell: who is logged in, which page is shown, and the navigation.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use yew::prelude::*;

use super::{api, build_page, builds, editor, login, releases, team};
use crate::model::api::Me;
use crate::model::route::Route;

/// What every page may read and do.
#[derive(Clone, PartialEq)]
pub struct Ctx {
    /// `None` while not logged in.
    pub me: Option<Rc<Me>>,
    pub navigate: Callback<Route>,
    pub set_me: Callback<Option<Me>>,
}

fn current_route() -> Route {
    let path = web_sys::window()
        .and_then(|w| w.location().pathname().ok())
        .unwrap_or_default();
    Route::parse(&path)
}

fn push(route: &Route) {
    if let Some(h) = web_sys::window().and_then(|w| w.history().ok()) {
        let _ = h.push_state_with_url(&JsValue::NULL, "", Some(&route.path()));
    }
}

#[derive(Clone, PartialEq)]
enum Session {
    Checking,
    Out,
    In(Rc<Me>),
}

#[component]
pub fn App() -> Html {
    let route = use_state(current_route);
    let session = use_state(|| Session::Checking);

    {
        let session = session.clone();
        use_effect_with((), move |_| {
            yew::platform::spawn_local(async move {
                match api::get::<Me>("/auth/me").await {
                    Ok(me) => {
                        api::set_csrf(me.csrf_token.clone());
                        session.set(Session::In(Rc::new(me)));
                    }
                    Err(_) => session.set(Session::Out),
                }
            });
        });
    }
    {
        let route = route.clone();
        use_effect_with((), move |_| {
            let listener = Closure::<dyn Fn()>::new(move || route.set(current_route()));
            let window = web_sys::window().expect("window");
            let _ = window
                .add_event_listener_with_callback("popstate", listener.as_ref().unchecked_ref());
            move || {
                let _ = window.remove_event_listener_with_callback(
                    "popstate",
                    listener.as_ref().unchecked_ref(),
                );
            }
        });
    }
    {
        let title = route.title();
        use_effect_with(title, move |title| {
            if let Some(d) = web_sys::window().and_then(|w| w.document()) {
                d.set_title(&format!("{title} · kiln"));
            }
        });
    }

    let navigate = {
        let route = route.clone();
        Callback::from(move |r: Route| {
            push(&r);
            route.set(r);
        })
    };
    let set_me = {
        let session = session.clone();
        Callback::from(move |me: Option<Me>| match me {
            Some(me) => {
                api::set_csrf(me.csrf_token.clone());
                session.set(Session::In(Rc::new(me)));
            }
            None => {
                api::set_csrf(None);
                session.set(Session::Out);
            }
        })
    };
    let me = match &*session {
        Session::In(me) => Some(me.clone()),
        _ => None,
    };
    let ctx = Ctx {
        me: me.clone(),
        navigate: navigate.clone(),
        set_me: set_me.clone(),
    };

    let page = match (&*session, &*route) {
        (Session::Checking, _) => html! { <p class="muted" role="status">{ "Loading…" }</p> },
        (Session::Out, _) | (_, Route::Login) if me.is_none() => html! { <login::LoginPage /> },
        (_, Route::Login) | (_, Route::Editor) => html! { <editor::EditorPage /> },
        (_, Route::Builds) => html! { <builds::BuildsPage /> },
        (_, Route::Build(id)) => html! { <build_page::BuildPage id={id.clone()} /> },
        (_, Route::Team) => html! { <team::TeamPage /> },
        (_, Route::Releases) => html! { <releases::ReleasesPage /> },
        (_, Route::NotFound) => html! {
            <section><h1>{ "Not found" }</h1><p>{ "There is no page at this address." }</p></section>
        },
    };

    let logout = {
        let set_me = set_me.clone();
        let navigate = navigate.clone();
        Callback::from(move |_| {
            let set_me = set_me.clone();
            let navigate = navigate.clone();
            yew::platform::spawn_local(async move {
                let _ = api::act("POST", "/auth/logout").await;
                set_me.emit(None);
                navigate.emit(Route::Login);
            });
        })
    };
    let link = |r: Route, label: &'static str| {
        let current = std::mem::discriminant(&*route) == std::mem::discriminant(&r)
            || (matches!(&*route, Route::Build(_)) && r == Route::Builds);
        let navigate = navigate.clone();
        let href = r.path();
        let onclick = Callback::from(move |e: MouseEvent| {
            if e.ctrl_key() || e.meta_key() || e.shift_key() || e.button() != 0 {
                return;
            }
            e.prevent_default();
            navigate.emit(r.clone());
        });
        html! {
            <a {href} {onclick} aria-current={current.then_some("page")}>{ label }</a>
        }
    };

    html! {
        <ContextProvider<Ctx> context={ctx}>
            <a class="skip" href="#main">{ "Skip to content" }</a>
            <header class="top">
                <span class="brand" aria-hidden="true">{ "kiln" }</span>
                if let Some(me) = &me {
                    <nav aria-label="Main">
                        { link(Route::Editor, "Editor") }
                        { link(Route::Builds, "Builds") }
                        { link(Route::Releases, "Releases") }
                        { link(Route::Team, "Team") }
                    </nav>
                    <span class="who">
                        <span id="whoami">{ &me.user }</span>
                        <button type="button" class="link" onclick={logout}>{ "Log out" }</button>
                    </span>
                }
            </header>
            <main id="main" tabindex="-1">{ page }</main>
        </ContextProvider<Ctx>>
    }
}
