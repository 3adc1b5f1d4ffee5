"""Credentials and TLS to NATS against nats-server instances that require them: an NKey
user (seed and public key made here from an openssl Ed25519 key, encoded as the NKey
format says: base32 of prefix + key + CRC-16/XMODEM), TLS with a CA made here and client
certificate verification, and operator (JWT) mode with a .creds file whose operator,
account and user JWTs are signed here with openssl (what nsc would make; nsc and nk are
not in Debian). Every NATS connection of the node (the bus and the history's) uses them.
Bad or missing files are refused at start (exit 2)."""

import base64
import json
import os
import subprocess
import time

from natter_harness import HOST, Client, Proc, close_all, free_port, http_get, run, t, \
    wait_until


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def b32(data):
    return base64.b32encode(data).decode().rstrip("=")


PREFIX = {"user": 20 << 3, "account": 0, "operator": 14 << 3}


def make_nkey(directory, name="user", kind="user", with_pem=False):
    """(seed, public key) of a fresh NKey (user unless `kind` says account/operator):
    Ed25519 from openssl, NKey-encoded; with_pem adds the openssl key file (to sign)."""
    pem = os.path.join(directory, f"{name}.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", pem], check=True,
                   capture_output=True, timeout=30)
    priv = subprocess.run(["openssl", "pkey", "-in", pem, "-outform", "DER"], check=True,
                          capture_output=True, timeout=30).stdout[-32:]
    pub = subprocess.run(["openssl", "pkey", "-in", pem, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=30).stdout[-32:]
    pfx = PREFIX[kind]
    raw = bytes([(18 << 3) | (pfx >> 5), (pfx & 31) << 3]) + priv
    seed = b32(raw + crc16(raw).to_bytes(2, "little"))
    raw = bytes([pfx]) + pub
    public = b32(raw + crc16(raw).to_bytes(2, "little"))
    return (seed, public, pem) if with_pem else (seed, public)


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def nats_jwt(directory, issuer_pem, issuer_pub, subject, name, nats):
    """A NATS JWT (v2, alg ed25519-nkey) signed with openssl by the issuer's key."""
    head = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims = {"jti": b32(os.urandom(32)), "iat": int(time.time()), "iss": issuer_pub,
              "name": name, "sub": subject, "nats": dict(nats, version=2)}
    body = b64url(json.dumps(claims).encode())
    data = os.path.join(directory, f"{name}.jwt-input")
    with open(data, "w") as f:
        f.write(f"{head}.{body}")
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", issuer_pem, "-rawin",
                          "-in", data], check=True, capture_output=True, timeout=30).stdout
    return f"{head}.{body}.{b64url(sig)}"


def operator_setup(directory):
    """Operator, account and user keys and JWTs made here (what nsc would make): returns
    (server config body, creds file text, the user's public key)."""
    _, op_pub, op_pem = make_nkey(directory, "operator", "operator", with_pem=True)
    _, acc_pub, acc_pem = make_nkey(directory, "account", "account", with_pem=True)
    user_seed, user_pub = make_nkey(directory, "creds-user")
    unlimited = {k: -1 for k in ("subs", "data", "payload", "imports", "exports", "conn",
                                 "leaf", "mem_storage", "disk_storage", "streams",
                                 "consumer")}
    op_jwt = nats_jwt(directory, op_pem, op_pub, op_pub, "op", {"type": "operator"})
    acc_jwt = nats_jwt(directory, op_pem, op_pub, acc_pub, "chat",
                       {"type": "account", "limits": dict(unlimited, wildcards=True),
                        "default_permissions": {"pub": {}, "sub": {}}})
    user_jwt = nats_jwt(directory, acc_pem, acc_pub, user_pub, "natter",
                        {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1,
                         "payload": -1})
    _, sys_pub, _ = make_nkey(directory, "system", "account", with_pem=True)
    sys_jwt = nats_jwt(directory, op_pem, op_pub, sys_pub, "SYS",
                       {"type": "account", "limits": {"subs": -1, "conn": -1}})
    conf = (f"operator: {op_jwt}\nsystem_account: {sys_pub}\nresolver: MEMORY\n"
            f"resolver_preload: {{ {acc_pub}: {acc_jwt}, {sys_pub}: {sys_jwt} }}\n")
    creds = ("-----BEGIN NATS USER JWT-----\n" + user_jwt + "\n------END NATS USER JWT------\n\n"
             "-----BEGIN USER NKEY SEED-----\n" + user_seed + "\n------END USER NKEY SEED------\n")
    return conf, creds, user_pub, os.path.join(directory, "creds-user.pem"), user_jwt


def warm_up(nats, user_pem, user_jwt):
    """One client of the account, signed like nats.c signs (nonce, Ed25519), before the
    nodes connect: returns once the server said PONG to its CONNECT."""
    import socket
    with socket.create_connection((HOST, nats.port), timeout=5) as sock:
        f = sock.makefile("rb")
        info = json.loads(f.readline().split(b" ", 1)[1])
        nonce = os.path.join(os.path.dirname(user_pem), "nonce")
        with open(nonce, "w") as out:
            out.write(info["nonce"])
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", user_pem, "-rawin",
                              "-in", nonce], check=True, capture_output=True,
                             timeout=30).stdout
        connect = {"verbose": False, "pedantic": False, "jwt": user_jwt, "sig": b64url(sig),
                   "protocol": 1, "name": "warm-up"}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        line = f.readline()
        return line.startswith(b"PONG"), line


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_ca(directory, name):
    key, crt = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={name}")
    return crt, key


def make_signed(directory, name, ca, san=None):
    key, csr = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.csr")
    crt, ext = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.ext")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\n" if san else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", ext)
    return crt, key


class ConfNats(Proc):
    """nats-server from a config file (what the auth and TLS blocks need)."""

    def __init__(self, log_path, body):
        self.port, self.mport = free_port(), free_port()
        d = os.path.splitext(log_path)[0]
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nats.conf")
        with open(conf, "w") as f:
            f.write(f"listen: {HOST}:{self.port}\nhttp: {HOST}:{self.mport}\n"
                    f"jetstream {{ store_dir: \"{d}/js\" }}\n{body}\n")
        super().__init__("nats", ["nats-server", "-c", conf], log_path)

    @property
    def url(self):
        return f"nats://{HOST}:{self.port}"

    def wait_ready(self):
        wait_until(lambda: self.alive() and http_get(f"http://{HOST}:{self.mport}/healthz",
                                                     timeout=1)[0] == 200,
                   t(10), what="nats-server ready")
        return self

    def conns(self):
        _, body = http_get(f"http://{HOST}:{self.mport}/connz?auth=1", timeout=2)
        return {c.get("name", ""): c for c in json.loads(body).get("connections") or []}


def start_nats(harness, body):
    log, _ = harness._log("nats")
    return harness._start(ConfNats(log, body)).wait_ready()


def file_with(harness, name, text):
    path = os.path.join(harness.dir, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


async def chat(a, b):
    """A message from a client on one node reaches one on the other, and the history
    (JetStream, over the history's own connection) has it."""
    alice = await Client.connect(a, "alice")
    bob = await Client.connect(b, "bob")
    try:
        await alice.join("r")
        await bob.join("r")
        await alice.say("r", "hello over the secured bus")
        await bob.expect("message", message="hello over the secured bus", timeout=t(5))
        rid = await bob.action("history", roomId="r")
        f = await bob.expect_reply(rid, "history", timeout=t(10))
        assert [m["message"] for m in f["messages"]] == ["hello over the secured bus"], f
    finally:
        await close_all(alice, bob)


def not_ready(harness, node):
    """A node whose NATS credentials the server refuses stops with a failing status, so
    its supervisor restarts it (docs/security.md). nats.c 3.4 closes a connection after two
    authorization errors in a row (it has no option to keep retrying); the node never
    becomes ready before that, and exits with "closed for good" (the bus's connection) or
    "cannot set up the history" (the history's, when it was closed first)."""
    deadline = time.monotonic() + t(15)
    while node.alive() and time.monotonic() < deadline:
        try:
            assert node.get("/readyz", timeout=1)[0] == 503, "a refused node became ready"
        except OSError:
            pass
        time.sleep(0.2)
    assert not node.alive(), "a node refused by NATS is still running: " + node.log_text()
    node.stopped_by_us = True  # an expected exit
    assert node.popen.returncode not in (0, None), node.log_text()
    log = node.log_text()
    assert "closed for good" in log or "cannot set up the history" in log, log


def test_nkey_user(harness):
    seed, public = make_nkey(harness.dir)
    other_seed, _ = make_nkey(harness.dir, "other")
    nats = start_nats(harness, f"authorization {{ users: [ {{ nkey: {public} }} ] }}")
    seed_file = file_with(harness, "user.nk", seed + "\n")
    redis = harness.redis()
    a = harness.node("A", nats=nats, redis=redis, args=["--nats-nkey-seed", seed_file])
    # the nats.c "-----BEGIN USER NKEY SEED-----" block form works too
    block = file_with(harness, "block.nk", "-----BEGIN USER NKEY SEED-----\n" + seed +
                      "\n------END USER NKEY SEED------\n")
    b = harness.node("B", nats=nats, redis=redis, args=["--nats-nkey-seed", block])
    run(chat(a, b))
    conns = nats.conns()
    for name in ("A", "A-history", "B", "B-history"):  # the bus's and the history's
        assert conns[name].get("authorized_user") == public, (name, conns.get(name))
    # no credentials, or another user's seed: refused by the server, the node not ready
    c = harness.node("C", nats=nats, redis=redis, wait=False)
    d = harness.node("D", nats=nats, redis=redis, wait=False,
                     args=["--nats-nkey-seed", file_with(harness, "o.nk", other_seed)])
    not_ready(harness, c)
    not_ready(harness, d)
    assert "C" not in nats.conns() and "D" not in nats.conns()


def test_nkey_and_creds_files_refused_at_start(harness):
    seed, _ = make_nkey(harness.dir)
    good = file_with(harness, "good.nk", seed)
    bad = file_with(harness, "bad.nk", seed[:-1] + ("A" if seed[-1] != "A" else "B"))
    base = ["--nats", "nats://127.0.0.1:1", "--redis", "redis://127.0.0.1:1"]
    for args, needle in (
            (["--nats-nkey-seed", bad], "holds no valid user NKey seed"),
            (["--nats-nkey-seed", "/nonexistent/x.nk"], "cannot read --nats-nkey-seed"),
            (["--nats-creds", "/nonexistent/x.creds"], "cannot read --nats-creds"),
            (["--nats-creds", good, "--nats-nkey-seed", good], "not both"),
            (["--nats-tls-cert", good], "--nats-tls-cert and --nats-tls-key go together"),
            (["--nats-tls-ca", "/nonexistent/ca.pem"], "cannot read --nats-tls-ca")):
        rc, out = harness.run_node(base + args)
        assert rc == 2 and needle in out, (args, rc, out)
        assert seed not in out


def test_tls_with_client_certificate(harness):
    ca = make_ca(harness.dir, "ca")
    server = make_signed(harness.dir, "server", ca, san="IP:127.0.0.1,DNS:localhost")
    client = make_signed(harness.dir, "client", ca)
    other_ca = make_ca(harness.dir, "other-ca")
    nats = start_nats(harness, f"tls {{ cert_file: \"{server[0]}\", key_file: \"{server[1]}\","
                               f" ca_file: \"{ca[0]}\", verify: true, timeout: 3 }}")
    redis = harness.redis()
    tls = ["--nats-tls-ca", ca[0], "--nats-tls-cert", client[0], "--nats-tls-key", client[1]]
    a = harness.node("A", nats=nats, redis=redis, args=tls)
    b = harness.node("B", nats=nats, redis=redis,
                     env={"NATTER_NATS_TLS_CA": ca[0], "NATTER_NATS_TLS_CERT": client[0],
                          "NATTER_NATS_TLS_KEY": client[1]})
    run(chat(a, b))
    conns = nats.conns()
    for name in ("A", "A-history", "B", "B-history"):
        assert conns[name].get("tls_version"), (name, conns.get(name))
    # without a client certificate (verify: true), or trusting another CA: not ready
    c = harness.node("C", nats=nats, redis=redis, wait=False, args=["--nats-tls-ca", ca[0]])
    d = harness.node("D", nats=nats, redis=redis, wait=False,
                     args=["--nats-tls-ca", other_ca[0], "--nats-tls-cert", client[0],
                           "--nats-tls-key", client[1]])
    e = harness.node("E", nats=nats, redis=redis, wait=False)  # plain: refused by TLS
    for n in (c, d, e):
        not_ready(harness, n)
    names = nats.conns().keys()
    assert not {"C", "D", "E"} & set(names), names


def test_creds_file_operator_mode(harness):
    """A .creds file (user JWT + seed) against nats-server in operator mode with a memory
    resolver: the operator, account and user JWTs are made here with openssl (no nsc)."""
    conf, creds, user_pub, user_pem, user_jwt = operator_setup(harness.dir)
    nats = start_nats(harness, conf)
    # A first client whose CONNECT is signed independently of nats.c (openssl): the
    # JWT chain made here is valid on its own, whatever the nodes then do.
    ok, line = warm_up(nats, user_pem, user_jwt)
    assert ok, line
    creds_file = file_with(harness, "natter.creds", creds)
    redis = harness.redis()
    a = harness.node("A", nats=nats, redis=redis, args=["--nats-creds", creds_file])
    b = harness.node("B", nats=nats, redis=redis, env={"NATTER_NATS_CREDS": creds_file})
    run(chat(a, b))
    conns = nats.conns()
    for name in ("A", "A-history", "B", "B-history"):
        assert conns[name].get("authorized_user") == user_pub, (name, conns.get(name))
    c = harness.node("C", nats=nats, redis=redis, wait=False)  # no creds: refused
    not_ready(harness, c)
    assert "C" not in nats.conns()
