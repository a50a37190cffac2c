#!/usr/bin/env python3
"""Checks genesys-queues.json against the contract, and runs its queries on influxd.

    python3 packaging/check-dashboard.py packaging/grafana/genesys-queues.json

Structure: schema version, the ${DS_INFLUXDB} input, the template variables, and that
every query reads only measurements and fields the contract defines. Then, when the
Debian influxd (1.x) is installed, starts one on loopback ports in a temp dir, writes
points shaped like the service's output and runs every panel and variable query with
Grafana's macros filled in: each must succeed and return data. Exit 1 on any failure.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

AGENT = ["on_queue", "idle", "interacting", "communicating", "not_responding",
         "off_queue", "active", "members"]
MEDIA = ["waiting", "interacting", "alerting", "longest_waiting_seconds",
         "longest_interacting_seconds"]
INTERVAL = ["offered", "answered", "answer_seconds_sum", "abandoned", "abandon_seconds_sum",
            "short_abandoned", "flowed_out", "handled", "handle_seconds_sum", "waited",
            "wait_seconds_sum", "transferred", "over_sla", "service_level_numerator",
            "service_level_denominator", "service_level_target"]
HEALTH = ["polls", "poll_errors", "api_requests", "api_rate_limited", "token_refreshes",
          "queues", "points_written", "write_errors", "lines_spooled", "lines_dropped",
          "spool_bytes", "poll_ms_max", "write_ms_max"]
SUFFIXES = ["min", "max", "last", "mean"]
FIELDS = {
    "genesys_queue": {f"{m}_{s}" for m in AGENT for s in SUFFIXES} | {"samples"},
    "genesys_queue_media": {f"{m}_{s}" for m in MEDIA for s in SUFFIXES} | {"samples"},
    "genesys_queue_interval": set(INTERVAL),
    "genesys2influx": set(HEALTH),
}
TAGS = {"queue_id", "queue_name", "media_type", "instance", "org"}

failures = []


def fail(message):
    failures.append(message)
    print("FAIL", message)


def queries(dashboard):
    """(where, query) for every panel target and query variable."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel '{panel['title']}' {target['refId']}", target["query"], panel
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            yield f"variable {var['name']}", var["query"], None


def check_structure(dashboard):
    if dashboard.get("schemaVersion", 0) < 39:
        fail(f"schemaVersion {dashboard.get('schemaVersion')} < 39")
    inputs = {i["name"]: i for i in dashboard.get("__inputs", [])}
    if inputs.get("DS_INFLUXDB", {}).get("pluginId") != "influxdb":
        fail("no __inputs entry DS_INFLUXDB for an influxdb data source")
    if "${DS_INFLUXDB}" not in json.dumps(dashboard["templating"]):
        fail("the DS_INFLUXDB input is not used")
    names = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name in ["datasource", "org", "queue", "media_type", "instance"]:
        if name not in names:
            fail(f"template variable {name} missing")
    expected = {
        "queue": 'SHOW TAG VALUES FROM "genesys_queue" WITH KEY = "queue_name"',
        "media_type": 'SHOW TAG VALUES FROM "genesys_queue_media" WITH KEY = "media_type"',
        "org": 'SHOW TAG VALUES WITH KEY = "org"',
        "instance": 'SHOW TAG VALUES FROM "genesys2influx" WITH KEY = "instance"',
    }
    for name, query in expected.items():
        var = names.get(name, {})
        if not var.get("query", "").startswith(query):
            fail(f"variable {name} should query {query}")
        if not var.get("includeAll") or var.get("allValue") != ".*":
            fail(f"variable {name} needs includeAll with allValue .* (matches a missing tag)")
    ids = [p["id"] for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        fail("panel ids are not unique")
    titles = {p["title"] for p in dashboard["panels"]}
    for title in ["Waiting per queue", "Longest wait", "Agents idle", "Agents interacting",
                  "Agents on queue", "Agents off queue", "Members vs active", "Service health"]:
        if title not in titles:
            fail(f"panel '{title}' missing")
    longest = next((p for p in dashboard["panels"] if p["title"] == "Longest wait"), None)
    if longest:
        steps = [s["value"] for s in longest["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        if steps[1:] != [60, 180]:
            fail(f"Longest wait thresholds are {steps[1:]}, want 60 and 180 s")
    for where, query, panel in queries(dashboard):
        if panel and panel.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"{where}: not on the dashboard's data source")
        measurements = re.findall(r'FROM "([^"]+)"', query)
        if panel and not measurements:
            fail(f"{where}: no FROM \"measurement\"")
        for m in measurements:
            if m not in FIELDS:
                fail(f"{where}: measurement {m} is not in the contract")
        for quoted in re.findall(r'\(\s*"([^"]+)"\s*\)', query):
            if quoted in TAGS:
                continue
            if not any(quoted in FIELDS[m] for m in measurements):
                fail(f"{where}: field {quoted} is not in {measurements}")
        if panel and "$timeFilter" not in query:
            fail(f"{where}: no $timeFilter")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_lines(now):
    """A few windows of points shaped like the service's output."""
    lines = []
    queues = [("q1", "Sales, EMEA", "acme"), ("q2", "Support", "acme"), ("q3", "Billing", "")]
    for k in range(6):
        ts = (now // 60 - k - 1) * 60
        for qid, name, org in queues:
            tags = f"queue_id={qid},queue_name={name.replace(',', chr(92) + ',').replace(' ', chr(92) + ' ')}"
            if org:
                tags += f",org={org}"
            fields = []
            for i, m in enumerate(AGENT):
                fields += [f"{m}_min={i}i", f"{m}_max={i + 2}i", f"{m}_last={i + 1}i",
                           f"{m}_mean={i + 1.5}"]
            lines.append(f"genesys_queue,{tags} {','.join(fields)},samples=6i {ts}")
            for media in ["voice", "chat"]:
                fields = []
                for i, m in enumerate(MEDIA):
                    if m.endswith("_seconds"):
                        fields += [f"{m}_{s}={10.0 * (i + k)}" for s in SUFFIXES]
                    else:
                        fields += [f"{m}_min={i}i", f"{m}_max={i + k}i", f"{m}_last={i}i",
                                   f"{m}_mean={i + 0.5}"]
                lines.append(f"genesys_queue_media,{tags},media_type={media} "
                             f"{','.join(fields)},samples=6i {ts}")
                if k == 0:
                    bucket = (now // 900 - 1) * 900
                    fields = [f"{f}={'0.8' if f == 'service_level_target' else (str(3.5) if f.endswith('_sum') else '7i')}"
                              for f in INTERVAL]
                    lines.append(f"genesys_queue_interval,{tags},media_type={media} "
                                 f"{','.join(fields)} {bucket}")
        fields = ",".join(f"{f}={k + 1}i" for f in HEALTH)
        lines.append(f"genesys2influx,instance=host1 {fields} {ts}")
    return "\n".join(lines) + "\n"


def http(url, data=None):
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode()


def run_on_influxd(dashboard, influxd):
    work = tempfile.mkdtemp(prefix="g2i-dash-")
    http_port, rpc_port = free_port(), free_port()
    with open(os.path.join(work, "influxdb.conf"), "w") as conf:
        conf.write(f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{work}/meta"
[data]
  dir = "{work}/data"
  wal-dir = "{work}/wal"
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
[monitor]
  store-enabled = false
""")
    log = open(os.path.join(work, "influxd.log"), "w")
    proc = subprocess.Popen([influxd, "-config", os.path.join(work, "influxdb.conf")],
                            stdout=log, stderr=log)
    base = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(100):
            try:
                http(base + "/ping")
                break
            except OSError:
                time.sleep(0.1)
        else:
            fail("influxd did not start")
            return
        http(base + "/query", urllib.parse.urlencode({"q": "CREATE DATABASE genesys"}).encode())
        status, body = http(base + "/write?db=genesys&precision=s",
                            sample_lines(int(time.time())).encode())
        if status != 204:
            fail(f"writing sample points: {status} {body}")
        ran = 0
        for where, query, panel in queries(dashboard):
            interval = (panel or {}).get("interval", "1m")
            q = (query.replace("$timeFilter", "time > now() - 3h")
                 .replace("$__interval", interval))
            q = re.sub(r"\$(org|queue|media_type|instance)\b", ".*", q)
            params = urllib.parse.urlencode({"db": "genesys", "q": q, "epoch": "s"})
            _, body = http(f"{base}/query?{params}")
            result = json.loads(body)["results"][0]
            if "error" in result:
                fail(f"{where}: influxd: {result['error']}\n    {q}")
            elif not result.get("series"):
                fail(f"{where}: no data\n    {q}")
            elif where.startswith("panel 'Agents now'") and len(result["series"]) != 3:
                # "All" (.*) must also match the queue written without an org tag.
                fail(f"{where}: {len(result['series'])} queues, want 3 (one has no org tag)")
            ran += 1
        print(f"ran {ran} queries against influxd {influxd}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    path = sys.argv[1]
    with open(path) as f:
        dashboard = json.load(f)
    check_structure(dashboard)
    influxd = shutil.which("influxd") or (
        "/usr/bin/influxd" if os.access("/usr/bin/influxd", os.X_OK) else None)
    if influxd:
        run_on_influxd(dashboard, influxd)
    else:
        print("skip: influxd not installed (apt-get install influxdb): queries not run")
    if failures:
        print(f"{len(failures)} dashboard problem(s)")
        return 1
    print("dashboard OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
