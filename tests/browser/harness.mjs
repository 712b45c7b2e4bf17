// Starts the real system for the browser tests and stops it afterwards:
// a nats-server on a free port with a temp store, `antares dev` against it (scheduler,
// the demo worker, the console on a free port), a worker for the test's own app, and
// Debian's Chromium driven by playwright-core. Every wait polls a condition against a
// deadline; everything started is killed at the end, even when a test fails.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The login `antares dev` creates. */
export const DEV_LOGIN = { user: 'admin', password: 'antares-dev' };

const CHROMIUM = process.env.ANTARES_CHROMIUM || '/usr/bin/chromium';
const ANTARES = process.env.ANTARES_BIN || path.join(ROOT, 'target/debug/antares');
const NATS_SERVER = process.env.ANTARES_NATS_SERVER || path.join(ROOT, '.tools/bin/nats-server');
const DIST = path.join(ROOT, 'console/dist/index.html');
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Waits until `check()` returns something truthy, polling every 100 ms, at most `ms`. */
export async function until(what, ms, check) {
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
        try {
            const value = await check();
            if (value) return value;
        } catch (e) {
            last = e;
        }
        if (Date.now() > deadline) {
            throw new Error(`waited ${ms} ms for ${what}${last ? `: ${last.message}` : ''}`);
        }
        await pause(100);
    }
}

async function freePort() {
    const server = net.createServer();
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address();
    await new Promise((resolve) => server.close(resolve));
    return port;
}

function accepts(port) {
    return new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => {
            socket.destroy();
            resolve(true);
        });
        socket.once('error', () => resolve(false));
    });
}

function need(file, hint) {
    if (!fs.existsSync(file)) {
        throw new Error(`${file} is missing: ${hint}`);
    }
}

/** The running system: its URL, a browser context, and `stop()`. */
export class System {
    constructor() {
        this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'antares-browser-'));
        this.procs = [];
        // Whatever ends this process ends what it started: an exit, or a signal (the test
        // runner stopping it, Ctrl-C).
        this.onExit = () => this.killAll('SIGKILL');
        this.onSignal = (signal) => {
            this.killAll('SIGKILL');
            fs.rmSync(this.dir, { recursive: true, force: true });
            process.exit(128 + (os.constants.signals[signal] ?? 1));
        };
        process.on('exit', this.onExit);
        for (const s of SIGNALS) process.on(s, this.onSignal);
    }

    start(name, cmd, args, env = {}) {
        const log = fs.openSync(path.join(this.dir, `${name}.log`), 'a');
        const child = spawn(cmd, args, {
            cwd: this.dir,
            env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', ...env },
            stdio: ['ignore', log, log],
            // Its own process group, so stopping it stops what it started.
            detached: true,
        });
        fs.closeSync(log);
        child.exited = new Promise((resolve) => child.once('exit', resolve));
        child.name = name;
        this.procs.push(child);
        return child;
    }

    /** The last lines a process wrote, for failure messages. */
    tail(name, lines = 30) {
        try {
            const text = fs.readFileSync(path.join(this.dir, `${name}.log`), 'utf8');
            return text.trimEnd().split('\n').slice(-lines).join('\n');
        } catch {
            return '(no output)';
        }
    }

    static kill(p, signal) {
        if (p.exitCode === null && p.signalCode === null) {
            try {
                process.kill(-p.pid, signal);
            } catch {
                // Already gone.
            }
        }
    }

    killAll(signal) {
        for (const p of this.procs) System.kill(p, signal);
    }

    /** Stops one process: SIGTERM, then SIGKILL if it has not exited within 10 s. */
    static async stopOne(p) {
        System.kill(p, 'SIGTERM');
        const ac = new AbortController();
        const late = pause(10_000, 'late', { signal: ac.signal }).catch(() => 'cancelled');
        if ((await Promise.race([p.exited, late])) === 'late') {
            System.kill(p, 'SIGKILL');
            await p.exited;
        }
        ac.abort();
    }

    async up({ app }) {
        need(ANTARES, 'build it with `cargo build --bin antares`');
        need(NATS_SERVER, 'install it with `scripts/install-tools`');
        need(DIST, 'build the console app with `scripts/build-console`');
        need(CHROMIUM, 'install Chromium with `scripts/install-tools --with-browser`');

        const natsPort = await freePort();
        this.start('nats-server', NATS_SERVER, [
            '-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', path.join(this.dir, 'nats'),
        ]);
        await until('nats-server to accept connections', 15_000, () => accepts(natsPort));

        const consolePort = await freePort();
        this.url = `http://127.0.0.1:${consolePort}`;
        const nats = ['--nats-url', `nats://127.0.0.1:${natsPort}`];
        const dev = this.start('antares-dev', ANTARES, [
            ...nats, 'dev', '--data', path.join(this.dir, 'dev'),
            '--console-listen', `127.0.0.1:${consolePort}`,
        ]);
        await until(`the console's /healthz at ${this.url}`, 60_000, async () => {
            if (dev.exitCode !== null) {
                throw new Error(`antares dev exited (${dev.exitCode}):\n${this.tail('antares-dev')}`);
            }
            const res = await fetch(`${this.url}/healthz`).catch(() => null);
            return res?.ok;
        });
        // The test's app has its own worker, which may run scripts.
        this.start('worker', ANTARES, [...nats, 'worker', '--app', app, '--allow-scripts']);

        this.context = await chromium.launchPersistentContext(path.join(this.dir, 'chromium'), {
            executablePath: CHROMIUM,
            headless: true,
            viewport: { width: 1280, height: 800 },
            args: [
                '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync',
            ],
        });
        return this;
    }

    async stop() {
        await this.context?.close().catch(() => {});
        // The newest first: the workers and the console before the NATS they talk to.
        for (const p of [...this.procs].reverse()) await System.stopOne(p);
        process.off('exit', this.onExit);
        for (const s of SIGNALS) process.off(s, this.onSignal);
        fs.rmSync(this.dir, { recursive: true, force: true });
    }
}
