//! The PCR table of a measurement manifest on the build page: each PCR's
//! predicted value per bank, its events behind a keyboard-reachable
//! expander, and which PCRs hold only on the reference VM model.

use yew::prelude::*;

use super::api;
use super::widgets::ErrorText;
use crate::model::api::ApiFailure;
use crate::model::pcrs::{basis_label, Manifest, Pcr};

#[derive(Properties, PartialEq)]
pub struct Props {
    /// The manifest artifact's download URL.
    pub url: AttrValue,
    pub name: AttrValue,
    /// Distinguishes the ids of several tables on one page.
    pub index: usize,
}

#[component]
pub fn PcrTable(props: &Props) -> Html {
    let manifest = use_state(|| None::<Manifest>);
    let error = use_state(|| None::<ApiFailure>);
    let open = use_state(Vec::<u32>::new);
    {
        let (manifest, error) = (manifest.clone(), error.clone());
        use_effect_with(props.url.clone(), move |url| {
            let url = url.to_string();
            yew::platform::spawn_local(async move {
                match api::get_at::<Manifest>(&url).await {
                    Ok(m) => manifest.set(Some(m)),
                    Err(e) => error.set(Some(e)),
                }
            });
        });
    }
    let Some(m) = &*manifest else {
        return html! { <ErrorText error={(*error).clone()} /> };
    };
    let heading = format!("pcrs-{}-h", props.index);
    let toggle = |pcr: u32| {
        let open = open.clone();
        Callback::from(move |_: MouseEvent| {
            let mut next = (*open).clone();
            match next.iter().position(|p| *p == pcr) {
                Some(i) => {
                    next.remove(i);
                }
                None => next.push(pcr),
            }
            open.set(next);
        })
    };
    let columns = m.banks.len() + 3;
    let row = |p: &Pcr| {
        let expanded = open.contains(&p.pcr);
        let events_id = format!("pcrs-{}-{}-events", props.index, p.pcr);
        let count = p.events.len();
        html! {
            <>
            <tr data-pcr={p.pcr.to_string()} class={classes!(p.needs_model().then_some("model"))}>
                <th scope="row">{ p.pcr }</th>
                <td>{ basis_label(&p.basis) }</td>
                { for m.banks.iter().map(|b| html! {
                    <td data-bank={b.clone()}><code class="digest">{ p.value(b).unwrap_or("") }</code></td>
                }) }
                <td>
                    <button type="button" class="expander" aria-expanded={expanded.to_string()}
                        aria-controls={events_id.clone()} onclick={toggle(p.pcr)}>
                        { format!("{} {count} event{}", if expanded { "Hide" } else { "Show" },
                            if count == 1 { "" } else { "s" }) }
                    </button>
                </td>
            </tr>
            <tr id={events_id} class="events" hidden={!expanded}>
                <td colspan={columns.to_string()}>
                    <table class="pcr-events">
                        <caption>{ format!("Events extended into PCR {}, in order", p.pcr) }</caption>
                        <thead><tr>
                            <th scope="col">{ "#" }</th>
                            <th scope="col">{ "Type" }</th>
                            { for m.banks.iter().map(|b| html! { <th scope="col">{ format!("Digest ({b})") }</th> }) }
                            <th scope="col">{ "Description" }</th>
                            <th scope="col">{ "Basis" }</th>
                        </tr></thead>
                        <tbody>
                            { for p.events.iter().enumerate().map(|(i, e)| html! {
                                <tr>
                                    <td>{ i + 1 }</td>
                                    <td><code>{ &e.kind }</code></td>
                                    { for m.banks.iter().map(|b| html! {
                                        <td><code class="digest">{ e.digest(b).unwrap_or("") }</code></td>
                                    }) }
                                    <td>{ &e.description }</td>
                                    <td>{ basis_label(&e.basis) }</td>
                                </tr>
                            }) }
                        </tbody>
                    </table>
                    <p class="muted">{ &p.note }</p>
                </td>
            </tr>
            </>
        }
    };
    html! {
        <section class="pcrs" aria-labelledby={heading.clone()} data-manifest={props.name.clone()}>
            <h3 id={heading}>{ "Predicted PCRs of " }<code>{ &m.artifact.name }</code></h3>
            <p class="model-note">{ m.model_note() }</p>
            <div class="table-wrap">
            <table class="pcr-table">
                <caption>
                    { format!("TPM PCR values after {} ({}) boots, from ", m.artifact.name, m.artifact.format) }
                    <code>{ &props.name }</code>
                    { format!("; reference VM model {}", m.reference_model.name) }
                </caption>
                <thead><tr>
                    <th scope="col">{ "PCR" }</th>
                    <th scope="col">{ "Depends on" }</th>
                    { for m.banks.iter().map(|b| html! { <th scope="col">{ b }</th> }) }
                    <th scope="col">{ "Events" }</th>
                </tr></thead>
                <tbody>{ for m.pcrs.iter().map(row) }</tbody>
            </table>
            </div>
        </section>
    }
}
