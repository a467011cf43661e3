//! Small pieces every page uses.

use yew::prelude::*;

use crate::model::api::ApiFailure;

#[derive(Properties, PartialEq)]
pub struct ErrorProps {
    pub error: Option<ApiFailure>,
}

/// An API failure as a sentence, announced to screen readers.
#[component]
pub fn ErrorText(props: &ErrorProps) -> Html {
    match &props.error {
        Some(e) => html! {
            <p class="error" role="alert" data-status={e.status.to_string()}>{ &e.text }</p>
        },
        None => html! {},
    }
}

/// The value of the input or select an event came from.
pub fn input_value(e: &Event) -> String {
    use wasm_bindgen::JsCast;
    let target = e.target();
    if let Some(i) = target
        .clone()
        .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
    {
        return i.value();
    }
    if let Some(s) = target
        .clone()
        .and_then(|t| t.dyn_into::<web_sys::HtmlSelectElement>().ok())
    {
        return s.value();
    }
    target
        .and_then(|t| t.dyn_into::<web_sys::HtmlTextAreaElement>().ok())
        .map(|t| t.value())
        .unwrap_or_default()
}
