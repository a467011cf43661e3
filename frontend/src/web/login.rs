//! Logging in with a local account.

use serde::Serialize;
use yew::prelude::*;

use super::api;
use super::app::Ctx;
use super::widgets::{input_value, ErrorText};
use crate::model::api::{ApiFailure, Me};
use crate::model::route::Route;

#[derive(Serialize)]
struct Login {
    username: String,
    password: String,
}

#[component]
pub fn LoginPage() -> Html {
    let ctx = use_context::<Ctx>().expect("context");
    let user = use_state(String::new);
    let password = use_state(String::new);
    let error = use_state(|| None::<ApiFailure>);
    let busy = use_state(|| false);

    let onsubmit = {
        let (user, password, error, busy) =
            (user.clone(), password.clone(), error.clone(), busy.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let body = Login {
                username: (*user).clone(),
                password: (*password).clone(),
            };
            let (error, busy, ctx) = (error.clone(), busy.clone(), ctx.clone());
            busy.set(true);
            yew::platform::spawn_local(async move {
                match api::post::<_, Me>("/auth/login", &body).await {
                    Ok(me) => {
                        error.set(None);
                        ctx.set_me.emit(Some(me));
                        let here = web_sys::window()
                            .and_then(|w| w.location().pathname().ok())
                            .map(|p| Route::parse(&p))
                            .unwrap_or(Route::Editor);
                        ctx.navigate.emit(if here == Route::Login {
                            Route::Editor
                        } else {
                            here
                        });
                    }
                    Err(e) => error.set(Some(e)),
                }
                busy.set(false);
            });
        })
    };
    let on_user = {
        let user = user.clone();
        Callback::from(move |e: InputEvent| user.set(input_value(&e.into())))
    };
    let on_password = {
        let password = password.clone();
        Callback::from(move |e: InputEvent| password.set(input_value(&e.into())))
    };

    html! {
        <section class="login">
            <h1>{ "Log in to kiln" }</h1>
            <form {onsubmit} aria-describedby="login-error">
                <label for="login-user">{ "User name" }</label>
                <input id="login-user" name="username" autocomplete="username" required=true
                    value={(*user).clone()} oninput={on_user} />
                <label for="login-password">{ "Password" }</label>
                <input id="login-password" name="password" type="password" required=true
                    autocomplete="current-password" value={(*password).clone()} oninput={on_password} />
                <button type="submit" disabled={*busy}>{ "Log in" }</button>
                <div id="login-error"><ErrorText error={(*error).clone()} /></div>
            </form>
        </section>
    }
}
