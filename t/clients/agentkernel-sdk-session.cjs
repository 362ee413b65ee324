// The agentkernel Node.js SDK (npm "agentkernel") driving the gateway as
// its users do: configured only by AGENTKERNEL_BASE_URL and
// AGENTKERNEL_API_KEY.  run, runStream, a sandbox session removed by its
// disposer, and listSandboxes; prints one JSON line of what it saw.
//   node agentkernel-sdk-session.cjs SESSION_NAME
const { AgentKernel } = require('agentkernel');

async function main() {
    const name = process.argv[2];
    const client = new AgentKernel({ timeout: 120000 });
    const out = {};

    out.health = await client.health();
    out.run = (await client.run(['sh', '-c', 'echo from run; echo err >&2']))
        .output;

    out.events = [];
    for await (const ev of client.runStream(['sh', '-c', 'echo streamed'])) {
        out.events.push({ type: ev.type, data: ev.data });
    }

    const sb = await client.sandbox(name, { image: 'alpine:3.20' });
    try {
        out.sessionInfo = await sb.info();
        out.sessionRun = (await sb.run(['printf', '%s|', 'a b', '$(id)']))
            .output;
        out.listed = (await client.listSandboxes()).map((s) => s.name);
    } finally {
        const dispose = sb[Symbol.asyncDispose];
        await (dispose ? dispose.call(sb) : sb.remove());
    }
    out.listedAfter = (await client.listSandboxes()).map((s) => s.name);

    try {
        await client.getSandbox(name);
        out.getAfter = 'found';
    } catch (e) {
        out.getAfter = e.constructor.name + ': ' + e.message;
    }

    try {
        await client.run([]);
        out.emptyArgv = 'accepted';
    } catch (e) {
        out.emptyArgv = e.constructor.name + ': ' + e.message;
    }

    console.log(JSON.stringify(out));
}

main().catch((e) => {
    console.error(e && e.stack || String(e));
    process.exit(1);
});
