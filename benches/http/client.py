"""Load generator for `benches/http/run.sh`: N POST /v1/sanitize requests from C threads, each
on its own keep-alive connection. Prints requests/s and latency percentiles as one JSON line."""
import http.client
import json
import sys
import threading
import time

host, port, token, path, total, clients = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
body = open(path, "rb").read()
lock = threading.Lock()
left = [total]
latencies = []
statuses = {}


def worker():
    conn = http.client.HTTPConnection(host, port, timeout=120)
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/octet-stream"}
    while True:
        with lock:
            if left[0] == 0:
                break
            left[0] -= 1
        t0 = time.perf_counter()
        conn.request("POST", "/v1/sanitize?filename=page.html", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        dt = time.perf_counter() - t0
        with lock:
            latencies.append(dt)
            statuses[resp.status] = statuses.get(resp.status, 0) + 1


start = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - start
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
print(json.dumps({
    "requests": len(latencies), "clients": clients, "wall_s": round(wall, 3),
    "req_per_s": round(len(latencies) / wall, 1), "p50_ms": round(pick(0.5), 1),
    "p99_ms": round(pick(0.99), 1), "statuses": statuses,
}))
