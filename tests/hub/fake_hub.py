"""A Hugging Face Hub for the tests of tunec's Hub sources (tests/hub.rs): the parts of the Hub's
HTTP API that `tunec run` uses, served from a folder, with every request logged.

    python fake_hub.py ROOT --port-file FILE --log FILE

ROOT holds one folder per repository and revision, the revision percent-encoded as one segment:

    ROOT/datasets/<org>/<name>/refs%2Fconvert%2Fparquet/<subset>/<split>/0000.parquet
    ROOT/models/<org>/<name>/main/tokenizer.json

What it answers, as the Hub does:
- GET /api/{datasets,models}/<org>/<name>/tree/<revision>[/<path>]: the folder's entries (type,
  path, size, git blob oid, and an `lfs` object with the SHA-256 for .parquet and .json files over
  1 KiB), two entries a page with a `Link: <...>; rel="next"` header.
- GET /datasets/<org>/<name>/resolve/<revision>/<path> and /<org>/<name>/resolve/<revision>/<path>:
  an LFS file redirects (302) to http://localhost:<port>/cdn/<sha256> (another host name, as the
  Hub's CDN is another host), which serves it; other files are served directly.
- A repository with a `.token` file is gated: without `Authorization: Bearer <that token>` its
  requests get 401 (no token) or 403 (another token) with `X-Error-Code: GatedRepo`.
- Unknown repository: 401 `RepoNotFound`; unknown revision: 404 `RevisionNotFound`; unknown path:
  404 `EntryNotFound`.

While ROOT/.flaky holds a number N > 0, the next N requests get 503 (and N goes down by one each),
logged as {"answered": 503, "path": ...}.

Each request is one JSON line in the log: method, path, whether it carried a token.
"""

import argparse
import hashlib
import json
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = 2
LOCK = threading.Lock()


def is_lfs(path, size):
    return path.endswith(".parquet") or (path.endswith(".json") and size > 1024)


def entry(root_dir, rel):
    full = os.path.join(root_dir, rel)
    if os.path.isdir(full):
        return {"type": "directory", "oid": hashlib.sha1(rel.encode()).hexdigest(), "size": 0, "path": rel}
    data = open(full, "rb").read()
    out = {
        "type": "file",
        "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
        "size": len(data),
        "path": rel,
    }
    if is_lfs(rel, len(data)):
        out["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 132}
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=b"", headers=None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message):
        body = json.dumps({"error": message}).encode()
        self.send(status, body, {"X-Error-Code": code, "X-Error-Message": message})

    def repo(self, kind, org, name, revision):
        """The revision's folder, or an error already sent."""
        repo_dir = os.path.join(self.server.root, kind, org, name)
        if not os.path.isdir(repo_dir):
            self.error(401, "RepoNotFound", "Repository not found")
            return None
        token_file = os.path.join(repo_dir, ".token")
        if os.path.exists(token_file):
            expected = open(token_file).read().strip()
            auth = self.headers.get("Authorization", "")
            if not auth:
                self.error(401, "GatedRepo", "Access to this repository is restricted; you must be authenticated")
                return None
            if auth != f"Bearer {expected}":
                self.error(403, "GatedRepo", "Access to this repository is restricted and you are not in the authorized list")
                return None
        rev_dir = os.path.join(repo_dir, urllib.parse.quote(revision, safe=""))
        if not os.path.isdir(rev_dir):
            self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return rev_dir

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        with LOCK, open(self.server.log, "a") as log:
            log.write(json.dumps({
                "method": self.command,
                "path": url.path,
                "token": bool(self.headers.get("Authorization")),
            }) + "\n")
        flaky = os.path.join(self.server.root, ".flaky")
        with LOCK:
            left = int(open(flaky).read()) if os.path.exists(flaky) else 0
            if left > 0:
                open(flaky, "w").write(str(left - 1))
        if left > 0:
            with LOCK, open(self.server.log, "a") as log:
                log.write(json.dumps({"answered": 503, "path": url.path}) + "\n")
            return self.error(503, "", "Service Unavailable")
        if parts[0] == "cdn" and len(parts) == 2:
            data = self.server.blobs.get(parts[1])
            if data is None:
                return self.error(404, "EntryNotFound", "no such blob")
            return self.send(200, data, content_type="application/octet-stream")
        if parts[0] == "api" and len(parts) >= 6 and parts[1] in ("datasets", "models") and parts[4] == "tree":
            return self.tree(parts[1], parts[2], parts[3], parts[5], "/".join(parts[6:]), url.query)
        if parts[0] == "datasets" and len(parts) >= 6 and parts[3] == "resolve":
            return self.resolve("datasets", parts[1], parts[2], parts[4], "/".join(parts[5:]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve("models", parts[0], parts[1], parts[3], "/".join(parts[4:]))
        self.error(404, "EntryNotFound", f"no route for {url.path}")

    def tree(self, kind, org, name, revision, folder, query):
        rev_dir = self.repo(kind, org, name, revision)
        if rev_dir is None:
            return
        full = os.path.join(rev_dir, folder)
        if not os.path.isdir(full):
            return self.error(404, "EntryNotFound", f"{folder} does not exist on {revision}")
        names = sorted(n for n in os.listdir(full) if not n.startswith("."))
        entries = [entry(rev_dir, os.path.join(folder, n) if folder else n) for n in names]
        start = int(urllib.parse.parse_qs(query).get("cursor", ["0"])[0])
        page = entries[start:start + PAGE]
        headers = {}
        if start + PAGE < len(entries):
            base = f"http://{self.headers['Host']}{urllib.parse.urlsplit(self.path).path}"
            headers["Link"] = f'<{base}?cursor={start + PAGE}>; rel="next"'
        self.send(200, json.dumps(page).encode(), headers)

    def resolve(self, kind, org, name, revision, path):
        rev_dir = self.repo(kind, org, name, revision)
        if rev_dir is None:
            return
        full = os.path.join(rev_dir, path)
        if not os.path.isfile(full):
            return self.error(404, "EntryNotFound", f"{path} does not exist on {revision}")
        data = open(full, "rb").read()
        if is_lfs(path, len(data)):
            sha = hashlib.sha256(data).hexdigest()
            self.server.blobs[sha] = data
            # Another host name for the same server, as the Hub redirects to its CDN: a client must not
            # carry the token there.
            port = self.server.server_address[1]
            location = f"http://localhost:{port}/cdn/{sha}"
            return self.send(302, b"", {"Location": location, "X-Linked-Etag": f'"{sha}"'})
        self.send(200, data, content_type="application/octet-stream")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.root = args.root
    server.log = args.log
    server.blobs = {}
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
