//! Console users (admins only): who may log in, with which role, limited to which apps.

use antares_schemas::access::{NewUser, Role, User};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::components::confirm::ConfirmButton;
use crate::components::loaded::{Notice, NoticeLine, loaded};
use crate::format;

/// Apps typed as `a, b c` as a list.
pub fn app_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// A role `<select>` bound to `role`.
pub fn role_select(role: RwSignal<Role>, test: &'static str) -> impl IntoView {
    view! {
        <select
            data-test=test
            prop:value=move || role.get().as_str()
            on:change=move |ev| {
                if let Ok(r) = event_target_value(&ev).parse() {
                    role.set(r);
                }
            }
        >
            {Role::ALL.iter().map(|r| view! { <option value=r.as_str()>{r.as_str()}</option> }).collect_view()}
        </select>
    }
}

/// The users page.
#[component]
pub fn Users() -> impl IntoView {
    let users = LocalResource::new(|| api::get::<Vec<User>>("/api/users"));
    let notice = RwSignal::new(None::<Notice>);
    let remove = move |name: String| {
        spawn_local(async move {
            match api::delete(&format!("/api/users/{}", api::enc(&name))).await {
                Ok(()) => {
                    notice.set(Some(Notice::Done(format!("User {name} deleted."))));
                    users.refetch();
                }
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    };

    let name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Viewer);
    let apps = RwSignal::new(String::new());
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = NewUser {
            name: name.get_untracked().trim().to_string(),
            password: password.get_untracked(),
            role: role.get_untracked(),
            apps: app_list(&apps.get_untracked()),
        };
        if body.password.chars().count() < 8 {
            notice.set(Some(Notice::Failed(
                "A password has at least 8 characters.".into(),
            )));
            return;
        }
        spawn_local(async move {
            match api::post_unit("/api/users", &body).await {
                Ok(()) => {
                    notice.set(Some(Notice::Done(format!("User {} saved.", body.name))));
                    name.set(String::new());
                    password.set(String::new());
                    apps.set(String::new());
                    users.refetch();
                }
                Err(e) => notice.set(Some(Notice::Failed(e.message))),
            }
        });
    };

    view! {
        <h1>"Users"</h1>
        <NoticeLine notice/>
        <section class="card">
            {loaded(users, move |list| {
                let now = format::now_ms();
                let rows = list
                    .into_iter()
                    .map(|u| {
                        let user = u.name.clone();
                        view! {
                            <tr data-test="user-row" data-user=u.name.clone()>
                                <td>{u.name.clone()}</td>
                                <td><span class="badge">{u.role.as_str()}</span></td>
                                <td>{if u.apps.is_empty() { "all".to_string() } else { u.apps.join(", ") }}</td>
                                <td title=format::time(u.created_at)>{format::relative(u.created_at.millis(), now)}</td>
                                <td class="actions">
                                    <ConfirmButton
                                        label="Delete"
                                        question=format!("Delete user {}?", u.name)
                                        test="user-delete"
                                        danger=true
                                        on_confirm=Callback::new(move |()| remove(user.clone()))
                                    />
                                </td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! {
                    <div class="table-wrap">
                        <table data-test="users">
                            <thead><tr><th>"User"</th><th>"Role"</th><th>"Apps"</th><th>"Created"</th><th></th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                }
            })}
        </section>
        <section class="card">
            <h2>"Add or change a user"</h2>
            <p class="muted small">"Saving an existing name replaces its role, apps and password."</p>
            <form class="inline-form" on:submit=create data-test="new-user">
                <label>"Name" <input data-test="new-user-name" autocomplete="off" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/></label>
                <label>"Password" <input data-test="new-user-password" type="password" autocomplete="new-password" prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/></label>
                <label>"Role" {role_select(role, "new-user-role")}</label>
                <label class="grow">"Apps (empty for all)" <input data-test="new-user-apps" placeholder="billing, shop" prop:value=move || apps.get() on:input=move |ev| apps.set(event_target_value(&ev))/></label>
                <button type="submit" class="btn primary" data-test="new-user-submit">"Save user"</button>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn app_lists_split_on_commas_and_spaces() {
        assert_eq!(
            super::app_list(" billing, shop  ops,"),
            ["billing", "shop", "ops"]
        );
        assert!(super::app_list("").is_empty());
    }
}
