//! Creating and editing a job: every field of the spec (contract §2) in one form, a
//! preview of the next cron fires as you type, a script editor, and the server's
//! refusal shown next to the field it names.
//!
//! Alarms (contract §10) are edited like the rest: where they go (emails, webhooks),
//! what raises them (`on`) and when a run counts as stuck.

use std::time::Duration;

use antares_schemas::Timestamp;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::NavigateOptions;
use leptos_router::hooks::{use_navigate, use_params_map};
use serde_json::Value;

use crate::api;
use crate::components::code_editor::CodeEditor;
use crate::components::loaded::loaded;
use crate::form::{self, FieldError, JobForm, ScheduleKind};
use crate::format;

/// The editor page: `/apps/{app}/new-job` or `/apps/{app}/jobs/{job}/edit`.
#[component]
pub fn JobEditor() -> impl IntoView {
    let params = use_params_map();
    let app = move || params.with(|p| p.get("app").unwrap_or_default());
    let job = move || params.with(|p| p.get("job"));
    let base = LocalResource::new(move || {
        let (app, job) = (app(), job());
        async move {
            match job {
                Some(job) => {
                    api::get::<Value>(&format!(
                        "/api/apps/{}/jobs/{}",
                        api::enc(&app),
                        api::enc(&job)
                    ))
                    .await
                }
                None => Ok(form::new_spec(&app)),
            }
        }
    });
    view! {
        <p class="crumbs">
            <a href="/apps">"Apps"</a> " / " <a href=move || format!("/apps/{}", app())>{app}</a>
            {move || job().map(|j| view! { " / " <a href=format!("/apps/{}/jobs/{j}", app())>{j.clone()}</a> })}
        </p>
        <h1>{move || match job() { Some(j) => format!("Edit {j}"), None => "New job".to_string() }}</h1>
        {loaded(base, move |spec| view! { <Editor app=app() existing=job() base=spec/> })}
    }
}

/// What the cron preview shows.
#[derive(Clone, Debug, PartialEq)]
enum Preview {
    Idle,
    Loading,
    Times(Vec<Timestamp>),
    Error(String),
}

/// The fire times in a preview answer: a list of times, or an object holding one.
fn preview_times(v: &Value) -> Vec<Timestamp> {
    let list = match v {
        Value::Array(a) => Some(a),
        Value::Object(o) => o.values().find_map(Value::as_array),
        _ => None,
    };
    list.into_iter()
        .flatten()
        .filter_map(|t| t.as_str()?.parse().ok())
        .collect()
}

#[component]
fn Editor(app: String, existing: Option<String>, base: Value) -> impl IntoView {
    let navigate = use_navigate();
    let form = RwSignal::new(JobForm::from_spec(&base));
    let error = RwSignal::new(None::<FieldError>);
    let saving = RwSignal::new(false);
    let is_new = existing.is_none();

    let preview = cron_preview(form);
    // A refusal is about what was sent: editing clears it.
    Effect::new(move |_| {
        form.track();
        error.set(None);
    });

    let submit = {
        let app = app.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            if saving.get_untracked() {
                return;
            }
            let spec = match form.with_untracked(|f| f.to_spec(&app, &base)) {
                Ok(spec) => spec,
                Err(e) => {
                    error.set(Some(e));
                    return;
                }
            };
            let name = form.with_untracked(|f| f.name.trim().to_string());
            let app = app.clone();
            let existing = existing.clone();
            let navigate = navigate.clone();
            saving.set(true);
            spawn_local(async move {
                let result = match &existing {
                    Some(job) => {
                        api::put_unit(
                            &format!("/api/apps/{}/jobs/{}", api::enc(&app), api::enc(job)),
                            &spec,
                        )
                        .await
                    }
                    None => {
                        api::post_unit(&format!("/api/apps/{}/jobs", api::enc(&app)), &spec).await
                    }
                };
                saving.set(false);
                match result {
                    Ok(()) => navigate(
                        &format!("/apps/{app}/jobs/{name}"),
                        NavigateOptions::default(),
                    ),
                    Err(e) => error.set(Some(FieldError {
                        field: e.field.unwrap_or_default(),
                        message: e.message,
                    })),
                }
            });
        }
    };

    let summary = move || {
        error.get().map(|e| {
            let text = if form::owner(&e.field).is_some() {
                format!(
                    "Not saved: the field `{}` is refused (marked below).",
                    e.field
                )
            } else {
                format!("Not saved: {}", e.message)
            };
            view! { <p class="notice bad" data-test="form-error" role="alert">{text}</p> }
        })
    };

    let kind = move || form.with(|f| f.kind.clone());
    let schedule = move || form.with(|f| f.schedule);
    let use_source = move || form.with(|f| f.use_source);

    view! {
        <form class="editor" on:submit=submit data-test="job-form" novalidate>
            {summary}
            <fieldset class="card">
                <legend>"Job"</legend>
                <Field label="Name" id="job-name" field="name" error>
                    <input
                        id="job-name"
                        data-test="job-name"
                        placeholder="nightly-report"
                        disabled=!is_new
                        prop:value=move || form.with(|f| f.name.clone())
                        on:input=move |ev| {
                            let v = event_target_value(&ev);
                            form.update(|f| f.name = v);
                        }
                    />
                </Field>
                <Field label="Description" id="job-description" field="description" error>
                    {text(form, "job-description", |f| f.description.clone(), |f, v| f.description = v)}
                </Field>
                <Field label="Enabled" id="job-enabled" field="enabled" error note="A paused job's schedule does not fire; “Run now” still works.">
                    <input
                        id="job-enabled"
                        data-test="job-enabled"
                        type="checkbox"
                        prop:checked=move || form.with(|f| f.enabled)
                        on:change=move |ev| {
                            let v = event_target_checked(&ev);
                            form.update(|f| f.enabled = v);
                        }
                    />
                </Field>
            </fieldset>

            <fieldset class="card">
                <legend>"Schedule"</legend>
                <Field label="Fires" id="schedule-type" field="schedule" error>
                    <select
                        id="schedule-type"
                        data-test="schedule-type"
                        prop:value=move || schedule().as_str()
                        on:change=move |ev| {
                            let v = ScheduleKind::parse(&event_target_value(&ev));
                            form.update(|f| f.schedule = v);
                        }
                    >
                        <option value="none">"Only when triggered"</option>
                        <option value="cron">"On a cron schedule"</option>
                        <option value="every">"Every fixed period"</option>
                        <option value="at">"Once, at a time"</option>
                    </select>
                </Field>
                <Show when=move || schedule() == ScheduleKind::Cron>
                    <Field label="Cron" id="schedule-cron" field="schedule.cron" error note="5 fields (Unix), 6–7 (Quartz, with seconds), or @daily, @hourly, …">
                        {text(form, "schedule-cron", |f| f.cron.clone(), |f, v| f.cron = v)}
                    </Field>
                    <div class="preview" data-test="cron-preview">
                        {move || match preview.get() {
                            Preview::Idle => view! { <p class="muted">"Type a cron expression to see its next fires."</p> }.into_any(),
                            Preview::Loading => view! { <p class="muted">"Computing the next fires…"</p> }.into_any(),
                            Preview::Error(e) => view! {
                                <p class="field-error" data-test="cron-preview-error">{format!("Preview: {e}")}</p>
                            }.into_any(),
                            Preview::Times(times) => {
                                let items = times
                                    .into_iter()
                                    .map(|t| view! { <li title=t.to_rfc3339()>{format::time(t)}</li> })
                                    .collect_view();
                                view! {
                                    <p class="muted">"Next fires (your local time):"</p>
                                    <ol data-test="cron-preview-times">{items}</ol>
                                }
                                .into_any()
                            }
                        }}
                    </div>
                    <Field label="Time zone" id="schedule-tz" field="schedule.tz" error note="IANA name like Europe/Paris; empty for UTC.">
                        {text(form, "schedule-tz", |f| f.tz.clone(), |f, v| f.tz = v)}
                    </Field>
                </Show>
                <Show when=move || schedule() == ScheduleKind::Every>
                    <Field label="Every" id="schedule-every" field="schedule.every" error note="A duration like 30s, 5m or 1h; aligned to the Unix epoch.">
                        {text(form, "schedule-every", |f| f.every.clone(), |f, v| f.every = v)}
                    </Field>
                </Show>
                <Show when=move || schedule() == ScheduleKind::At>
                    <Field label="At" id="schedule-at" field="schedule.at" error note="An RFC 3339 time like 2026-12-01T02:00:00Z.">
                        {text(form, "schedule-at", |f| f.at.clone(), |f, v| f.at = v)}
                    </Field>
                </Show>
            </fieldset>

            <fieldset class="card">
                <legend>"What it runs"</legend>
                <Field label="Kind" id="job-kind" field="kind" error>
                    <select
                        id="job-kind"
                        data-test="job-kind"
                        prop:value=kind
                        on:change=move |ev| {
                            let v = event_target_value(&ev);
                            form.update(|f| f.kind = v);
                        }
                    >
                        <option value="plugin">"plugin: a job registered in the worker"</option>
                        <option value="script">"script: a command or a script"</option>
                        <option value="http">"http: a request to a URL"</option>
                    </select>
                </Field>
                <Show when=move || kind() == "plugin">
                    <Field label="Handler" id="job-handler" field="handler" error note="The name the worker registered; empty for the job's name.">
                        {text(form, "job-handler", |f| f.handler.clone(), |f, v| f.handler = v)}
                    </Field>
                </Show>
                <Show when=move || kind() == "script">
                    <Field label="Runs" id="script-mode" field="script" error>
                        <select
                            id="script-mode"
                            data-test="script-mode"
                            prop:value=move || if use_source() { "source" } else { "command" }
                            on:change=move |ev| {
                                let v = event_target_value(&ev) == "source";
                                form.update(|f| f.use_source = v);
                            }
                        >
                            <option value="command">"a command line (sh -c)"</option>
                            <option value="source">"a script stored with the job"</option>
                        </select>
                    </Field>
                    <Show
                        when=use_source
                        fallback=move || view! {
                            <Field label="Command" id="job-command" field="command" error>
                                <CodeEditor
                                    id="job-command"
                                    value=Signal::derive(move || form.with(|f| f.command.clone()))
                                    on_input=Callback::new(move |v| form.update(|f| f.command = v))
                                />
                            </Field>
                        }
                    >
                        <Field label="Language" id="script-lang" field="script" error>
                            <select
                                id="script-lang"
                                data-test="script-lang"
                                prop:value=move || form.with(|f| f.lang.clone())
                                on:change=move |ev| {
                                    let v = event_target_value(&ev);
                                    form.update(|f| f.lang = v);
                                }
                            >
                                <option value="shell">"shell"</option>
                                <option value="python">"python"</option>
                                <option value="node">"node"</option>
                            </select>
                        </Field>
                        <Field label="Source" id="script-source" field="script" error>
                            <CodeEditor
                                id="script-source"
                                value=Signal::derive(move || form.with(|f| f.source.clone()))
                                on_input=Callback::new(move |v| form.update(|f| f.source = v))
                            />
                        </Field>
                    </Show>
                    <p class="muted small">
                        "Workers run scripts only when started with " <code>"--allow-scripts"</code>
                        ". Every line the script prints is a log line of its shard."
                    </p>
                </Show>
                <Show when=move || kind() == "http">
                    <Field label="URL" id="http-url" field="http.url" error note="http:// or https://; each shard is one request.">
                        {text(form, "http-url", |f| f.http_url.clone(), |f, v| f.http_url = v)}
                    </Field>
                    <Field label="Method" id="http-method" field="http.method" error>
                        {select(form, "http-method", &[
                            ("GET", "GET"),
                            ("POST", "POST"),
                            ("PUT", "PUT"),
                            ("PATCH", "PATCH"),
                            ("DELETE", "DELETE"),
                        ], |f| f.http_method.clone(), |f, v| f.http_method = v)}
                    </Field>
                    <Field label="Headers" id="http-headers" field="http.headers" error note="One `Name: value` per line.">
                        <CodeEditor
                            id="http-headers"
                            value=Signal::derive(move || form.with(|f| f.http_headers.clone()))
                            on_input=Callback::new(move |v| form.update(|f| f.http_headers = v))
                        />
                    </Field>
                    <Field label="Body" id="http-body" field="http.body" error>
                        <CodeEditor
                            id="http-body"
                            value=Signal::derive(move || form.with(|f| f.http_body.clone()))
                            on_input=Callback::new(move |v| form.update(|f| f.http_body = v))
                        />
                    </Field>
                    <Field label="Request timeout" id="http-timeout" field="http.timeout" error note="Like 10s; 0s for none.">
                        {text(form, "http-timeout", |f| f.http_timeout.clone(), |f, v| f.http_timeout = v)}
                    </Field>
                    <p class="muted small">
                        "2xx is success; 429 and 503 answer later; any other status fails with an excerpt of the body. The shard is named in Antares- headers."
                    </p>
                </Show>
            </fieldset>

            <fieldset class="card">
                <legend>"Parameters and shards"</legend>
                <Field label="Params" id="job-params" field="params" error note="Handed to every shard (ANTARES_PARAMS for scripts).">
                    {text(form, "job-params", |f| f.params.clone(), |f, v| f.params = v)}
                </Field>
                <Field label="Shards" id="job-shards" field="shards" error note="Empty: one per shard param, or 1.">
                    {text(form, "job-shards", |f| f.shards.clone(), |f, v| f.shards = v)}
                </Field>
                <Field label="Shard params" id="job-shard-params" field="shard_params" error note="a;b;c gives item i the i-th; or a JSON list [\"a\", \"b\"].">
                    {text(form, "job-shard-params", |f| f.shard_params.clone(), |f, v| f.shard_params = v)}
                </Field>
                <Field label="Routing" id="job-routing" field="routing" error note="Which worker runs each shard. With broadcast, leave Shards and Shard params empty.">
                    {select(form, "job-routing", &[
                        ("pull", "pull: any free worker takes the next shard"),
                        ("broadcast", "broadcast: one shard per live worker"),
                        ("first", "first: the first worker (by id)"),
                        ("last", "last: the last worker (by id)"),
                        ("round_robin", "round_robin: each worker in turn"),
                        ("random", "random"),
                        ("consistent_hash", "consistent_hash: the same worker while the set is stable"),
                        ("least_frequently_used", "least_frequently_used"),
                        ("least_recently_used", "least_recently_used"),
                        ("failover", "failover: the first worker that answers"),
                        ("busyover", "busyover: the first worker with a free slot"),
                    ], |f| f.routing.clone(), |f, v| f.routing = v)}
                </Field>
                <Field label="Workers" id="job-workers" field="workers" error note="Worker ids this job may run on, separated by commas; empty for any worker of the app.">
                    {text(form, "job-workers", |f| f.workers.clone(), |f, v| f.workers = v)}
                </Field>
            </fieldset>

            <fieldset class="card">
                <legend>"Runs"</legend>
                <Field label="Overlap" id="job-overlap" field="overlap" error note="When it fires while an earlier run still runs.">
                    {select(form, "job-overlap", &[
                        ("serial", "serial: wait for the earlier run"),
                        ("discard", "discard: skip this one"),
                        ("cover", "cover: stop the earlier run"),
                        ("parallel", "parallel: run side by side"),
                    ], |f| f.overlap.clone(), |f, v| f.overlap = v)}
                </Field>
                <Show when=move || form.with(|f| f.overlap == "parallel")>
                    <Field label="Max parallel" id="job-max-parallel" field="max_parallel" error>
                        {text(form, "job-max-parallel", |f| f.max_parallel.clone(), |f, v| f.max_parallel = v)}
                    </Field>
                </Show>
                <Field label="Timeout" id="job-timeout" field="timeout" error note="Per shard attempt, like 30s or 10m; 0s for none.">
                    {text(form, "job-timeout", |f| f.timeout.clone(), |f, v| f.timeout = v)}
                </Field>
                <Field label="Misfire" id="job-misfire" field="misfire" error note="Fires missed while no scheduler ran.">
                    {select(form, "job-misfire", &[
                        ("fire_once", "fire_once: run once for all"),
                        ("skip", "skip: drop them"),
                        ("catch_up", "catch_up: run each"),
                    ], |f| f.misfire.clone(), |f, v| f.misfire = v)}
                </Field>
                <Field label="Children" id="job-children" field="children" error note="app/job names fired after a success, separated by commas.">
                    {text(form, "job-children", |f| f.children.clone(), |f, v| f.children = v)}
                </Field>
            </fieldset>

            <fieldset class="card">
                <legend>"Retry of failed shards"</legend>
                <div class="row">
                    <Field label="Retries" id="retry-max" field="retry.max" error>
                        {text(form, "retry-max", |f| f.retry_max.clone(), |f, v| f.retry_max = v)}
                    </Field>
                    <Field label="First backoff" id="retry-backoff" field="retry.backoff" error>
                        {text(form, "retry-backoff", |f| f.retry_backoff.clone(), |f, v| f.retry_backoff = v)}
                    </Field>
                    <Field label="Multiplier" id="retry-multiplier" field="retry.multiplier" error>
                        {text(form, "retry-multiplier", |f| f.retry_multiplier.clone(), |f, v| f.retry_multiplier = v)}
                    </Field>
                    <Field label="Longest backoff" id="retry-max-backoff" field="retry.max_backoff" error>
                        {text(form, "retry-max-backoff", |f| f.retry_max_backoff.clone(), |f, v| f.retry_max_backoff = v)}
                    </Field>
                </div>
            </fieldset>

            <fieldset class="card">
                <legend>"Alarms"</legend>
                <Field label="E-mails" id="alarm-emails" field="alarm.emails" error note="Addresses mailed on an alarm, separated by commas (the scheduler needs --smtp-url).">
                    {text(form, "alarm-emails", |f| f.alarm_emails.clone(), |f, v| f.alarm_emails = v)}
                </Field>
                <Field label="Webhooks" id="alarm-webhooks" field="alarm.webhooks" error note="http(s) URLs that get a POST of the alarm as JSON, separated by commas.">
                    {text(form, "alarm-webhooks", |f| f.alarm_webhooks.clone(), |f, v| f.alarm_webhooks = v)}
                </Field>
                <Field label="On" id="alarm-on" field="alarm.on" error note="What raises one: fail, timeout, misfire, stuck, recovered.">
                    {text(form, "alarm-on", |f| f.alarm_on.clone(), |f, v| f.alarm_on = v)}
                </Field>
                <Field label="Stuck after" id="alarm-stuck" field="alarm.stuck_after" error note="With stuck in On: a run still going this long after it started, like 30m.">
                    {text(form, "alarm-stuck", |f| f.alarm_stuck_after.clone(), |f, v| f.alarm_stuck_after = v)}
                </Field>
            </fieldset>

            <div class="form-actions">
                <button type="submit" class="btn primary" data-test="job-save" disabled=move || saving.get()>
                    {if is_new { "Create job" } else { "Save" }}
                </button>
                <a class="btn quiet" href=format!("/apps/{app}")>"Cancel"</a>
            </div>
        </form>
    }
}

/// A labelled input with its note and, when the server or the form refused it, the
/// error about it.
#[component]
fn Field(
    label: &'static str,
    id: &'static str,
    /// The spec path errors name.
    field: &'static str,
    error: RwSignal<Option<FieldError>>,
    #[prop(optional)] note: Option<&'static str>,
    children: Children,
) -> impl IntoView {
    let message = move || {
        error.with(|e| {
            e.as_ref()
                .filter(|e| form::owner(&e.field) == Some(field))
                .map(|e| form::field_message(&e.message, &e.field))
        })
    };
    view! {
        <div class="field" class:has-error=move || message().is_some()>
            <label for=id>{label}</label>
            <div class="control">
                {children()}
                {note.map(|n| view! { <p class="note">{n}</p> })}
                {move || message().map(|m| view! {
                    <p class="field-error" data-test="field-error" data-field=field role="alert">{m}</p>
                })}
            </div>
        </div>
    }
}

/// A text input bound to one field of the form.
fn text(
    form: RwSignal<JobForm>,
    id: &'static str,
    get: fn(&JobForm) -> String,
    set: fn(&mut JobForm, String),
) -> impl IntoView {
    view! {
        <input
            id=id
            data-test=id
            prop:value=move || form.with(get)
            on:input=move |ev| {
                let v = event_target_value(&ev);
                form.update(|f| set(f, v));
            }
        />
    }
}

/// A select bound to one field of the form.
fn select(
    form: RwSignal<JobForm>,
    id: &'static str,
    options: &[(&'static str, &'static str)],
    get: fn(&JobForm) -> String,
    set: fn(&mut JobForm, String),
) -> impl IntoView {
    let options = options
        .iter()
        .map(|(value, text)| view! { <option value=*value>{*text}</option> })
        .collect_view();
    view! {
        <select
            id=id
            data-test=id
            prop:value=move || form.with(get)
            on:change=move |ev| {
                let v = event_target_value(&ev);
                form.update(|f| set(f, v));
            }
        >
            {options}
        </select>
    }
}

/// The next fires of the cron being typed, from the server, 300 ms after the last key.
fn cron_preview(form: RwSignal<JobForm>) -> RwSignal<Preview> {
    let preview = RwSignal::new(Preview::Idle);
    let input = Memo::new(move |_| {
        form.with(|f| {
            (f.schedule == ScheduleKind::Cron)
                .then(|| (f.cron.trim().to_string(), f.tz.trim().to_string()))
        })
    });
    let generation = StoredValue::new(0u64);
    let timer = StoredValue::new(None::<TimeoutHandle>);
    Effect::new(move |_| {
        let current = input.get();
        if let Some(t) = timer.get_value() {
            t.clear();
        }
        generation.update_value(|g| *g += 1);
        let Some((expr, tz)) = current.filter(|(e, _)| !e.is_empty()) else {
            preview.set(Preview::Idle);
            return;
        };
        let mine = generation.get_value();
        preview.set(Preview::Loading);
        let handle = set_timeout_with_handle(
            move || {
                let url = api::with_query(
                    "/api/cron/preview",
                    &[("expr", &expr), ("tz", &tz), ("n", "5")],
                );
                spawn_local(async move {
                    let result = api::get::<Value>(&url).await;
                    if generation.try_get_value() != Some(mine) {
                        return;
                    }
                    preview.try_set(match result {
                        Ok(v) => Preview::Times(preview_times(&v)),
                        Err(e) => Preview::Error(e.message),
                    });
                });
            },
            Duration::from_millis(300),
        )
        .ok();
        timer.set_value(handle);
    });
    preview
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preview_answers_are_read_as_a_list_or_inside_an_object() {
        let t = "2026-12-01T02:00:00.000Z";
        assert_eq!(preview_times(&json!([t, t])).len(), 2);
        assert_eq!(preview_times(&json!({"times": [t]})).len(), 1);
        assert!(preview_times(&json!({"error": "x"})).is_empty());
    }
}
