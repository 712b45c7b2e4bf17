// The console in a real browser against the real system (see harness.mjs): log in;
// create an app and a script job through the form; see a bad cron refused next to its
// field; run the job and watch its instance succeed; see its output in the live logs;
// pause it; roll back a version; make a token and a user; page and filter the jobs
// list; log out.
//
// Screenshots of the main pages go to target/screenshots/, or to the folder
// ANTARES_SCREENSHOTS names: `ANTARES_SCREENSHOTS=docs/screenshots node --test
// tests/browser` refreshes the ones in the docs.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test as nodeTest } from 'node:test';

import { DEV_LOGIN, ROOT, System, until } from './harness.mjs';

const APP = 'shop';
const JOB = 'report';
const MARKER = 'hello from the browser test';
const SHOTS = path.resolve(ROOT, process.env.ANTARES_SCREENSHOTS || 'target/screenshots');
const WAIT = 20_000;

let system;
let page;
let failed = false;

// The steps build on each other: after a failure the rest are skipped, not timed out.
function test(name, fn) {
    nodeTest(name, async (t) => {
        if (failed) {
            t.skip('an earlier step failed');
            return;
        }
        try {
            await fn(t);
        } catch (e) {
            failed = true;
            const file = path.join(ROOT, 'target', 'browser-failure.png');
            await page?.screenshot({ path: file, fullPage: true }).then(() => console.error(`page at the failure: ${file}`), () => {});
            throw e;
        }
    });
}

const t = (id) => page.locator(`[data-test="${id}"]`);
async function shot(name) {
    // From the top, so the sticky bar stays at the top of a full-page picture.
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

before(async () => {
    system = await new System().up({ app: APP });
    page = await system.context.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
});

after(async () => {
    await system?.stop();
});

test('an anonymous visitor is sent to the login page, and logs in', async () => {
    await page.goto(`${system.url}/apps`);
    await page.waitForURL(/\/login\?next=%2Fapps$/);
    await t('login-user').fill(DEV_LOGIN.user);
    await t('login-password').fill('not the password');
    await t('login-submit').click();
    await t('login-error').waitFor();
    await t('login-password').fill(DEV_LOGIN.password);
    await t('login-submit').click();
    await page.waitForURL(`${system.url}/apps`);
    assert.equal(await t('me').textContent(), DEV_LOGIN.user);
    assert.equal(await t('role').textContent(), 'admin');
});

test('an app is created from the apps page', async () => {
    await t('new-app-name').fill(APP);
    await t('new-app-description').fill('The shop');
    await t('new-app-submit').click();
    await page.locator(`[data-test="app-row"][data-app="${APP}"]`).waitFor();
    await page.locator(`[data-test="app-row"][data-app="${APP}"] [data-test="app-link"]`).click();
    await t('no-jobs').waitFor();
});

test('a bad cron is refused next to its field, and a script job is created', async () => {
    await t('new-job').click();
    await t('job-name').fill(JOB);
    await t('job-description').fill('Prints a line');
    await t('schedule-type').selectOption('cron');
    await t('schedule-cron').fill('61 * * * *');
    // The preview says what is wrong as you type...
    await t('cron-preview-error').waitFor();
    await t('job-kind').selectOption('script');
    await t('job-command').fill(`echo "${MARKER}: $ANTARES_PARAMS"`);
    // ...and the server refuses the spec, naming the field.
    await t('job-save').click();
    const error = page.locator('[data-test="field-error"][data-field="schedule.cron"]');
    await error.waitFor();
    assert.match(await error.textContent(), /\S/);
    await t('form-error').waitFor();
    await shot('job-editor-error');

    await t('schedule-cron').fill('0 0 3 1 1 ?');
    await page.locator('[data-test="cron-preview-times"] li').nth(4).waitFor();
    await shot('job-editor');
    await t('job-save').click();
    await page.waitForURL(`${system.url}/apps/${APP}/jobs/${JOB}`);
    assert.equal(await t('job-state').textContent(), 'active');
});

test('running the job shows its instance reach success, with its output in the live logs', async () => {
    await t('run-params').fill('p-42');
    await t('run-now').click();
    await page.waitForURL(/\/instances\/[0-9A-Z]{26}$/);
    await page.locator('[data-test="instance-status"][data-status="success"]').waitFor();
    await page.locator('[data-test="log-lines"]', { hasText: `${MARKER}: p-42` }).waitFor();
    await page.locator('[data-test="log-state"][data-state="ended"]').waitFor();
    await page.locator('[data-test="shard-row"] [data-test="status"]', { hasText: 'success' }).waitFor();
    await shot('instance');
});

test('the job is paused from its page', async () => {
    await page.goto(`${system.url}/apps/${APP}/jobs/${JOB}`);
    await t('job-pause').click();
    await page.locator('[data-test="job-state"]', { hasText: 'paused' }).waitFor();
    await page.locator('[data-test="version-row"][data-version="2"]').waitFor();
});

test('a version diff shows what changed, and rolling back brings the old spec back', async () => {
    await page.locator('[data-test="version-row"][data-version="2"] [data-test="version-diff"]').click();
    await page.locator('[data-test="diff"]', { hasText: 'enabled' }).waitFor();
    await page.locator('[data-test="version-row"][data-version="1"] [data-test="version-rollback"]').click();
    await page.locator('[data-test="version-row"][data-version="1"] [data-test="version-rollback-yes"]').click();
    await page.locator('[data-test="job-state"]', { hasText: 'active' }).waitFor();
    await page.locator('[data-test="version-row"][data-version="3"]', { hasText: 'rollback to v1' }).waitFor();
    await shot('job');
});

test('the main pages render (screenshots)', async () => {
    await page.goto(`${system.url}/apps/${APP}`);
    await page.locator(`[data-test="job-row"][data-job="${JOB}"] [data-test="last-run"] [data-test="status"]`, { hasText: 'success' }).waitFor();
    await shot('jobs');

    await page.goto(`${system.url}/cluster`);
    await t('leader').waitFor();
    await page.locator('[data-test="worker-row"]', { hasText: APP }).waitFor();
    await shot('cluster');

    // Today's bar has the run above.
    const dashboard = '[data-test="day-chart"] rect.seg.status-success';
    await page.goto(`${system.url}/`);
    await page.locator(dashboard).waitFor();
    await shot('dashboard');

    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await page.locator(dashboard).waitFor();
    await shot('dashboard-phone');
    await page.setViewportSize({ width: 1280, height: 800 });
});

test('an API token shows its secret once; a user is added; the audit log has the changes', async () => {
    await t('nav-tokens').click();
    await t('new-token-name').fill('ci');
    await t('new-token-role').selectOption('operator');
    await t('new-token-submit').click();
    const secret = await t('token-secret-value').textContent();
    assert.match(secret, /^\S+\.\S+$/);
    await page.locator('[data-test="token-row"][data-token="ci"]').waitFor();

    await t('nav-users').click();
    await t('new-user-name').fill('viewer1');
    await t('new-user-password').fill('a long password');
    await t('new-user-apps').fill(APP);
    await t('new-user-submit').click();
    await page.locator('[data-test="user-row"][data-user="viewer1"]', { hasText: 'viewer' }).waitFor();

    await t('nav-audit').click();
    await page.locator('[data-test="audit-row"]', { hasText: 'user.' }).first().waitFor();
    await page.locator('[data-test="audit-row"]', { hasText: 'job.rollback' }).first().waitFor();
});

test('the jobs list pages by name and filters by the start of a name', async () => {
    // 50 more jobs, made through the API with the browser's session: with the first one,
    // 51 jobs make two pages of 50.
    const made = await Promise.all(Array.from({ length: 50 }, (_, i) => {
        const name = `bulk-${String(i).padStart(2, '0')}`;
        return page.request.post(`${system.url}/api/apps/${APP}/jobs`, {
            data: { app: APP, name, kind: 'script', command: 'true' },
        });
    }));
    for (const res of made) assert.equal(res.status(), 201, await res.text());
    await page.goto(`${system.url}/apps/${APP}`);
    const rows = page.locator('[data-test="job-row"]');
    await page.locator('[data-test="job-row"][data-job="bulk-49"]').waitFor();
    assert.equal(await rows.count(), 50);
    await t('older').click();
    await page.locator(`[data-test="job-row"][data-job="${JOB}"]`).waitFor();
    assert.equal(await rows.count(), 1);
    await t('newer').click();
    await page.locator('[data-test="job-row"][data-job="bulk-00"]').waitFor();

    await t('job-filter').fill(JOB.slice(0, 3));
    await until('one row', WAIT, async () => (await rows.count()) === 1);
    await page.locator(`[data-test="job-row"][data-job="${JOB}"]`).waitFor();
    await t('job-filter').fill('zzz');
    await t('no-jobs-match').waitFor();
});

test('logging out ends the session', async () => {
    await t('logout').click();
    await page.waitForURL(/\/login$/);
    await page.goto(`${system.url}/cluster`);
    await page.waitForURL(/\/login\?next=%2Fcluster$/);
});
