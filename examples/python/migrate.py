"""Migrate one mailbox through the gRPC API: create, watch the pass, list what failed.

Stubs first, outside the repository:
  python -m grpc_tools.protoc -I proto --python_out=stubs --grpc_python_out=stubs \
      proto/mailferry/v1/migration.proto
Then, with the fleet of the README's "The fleet" section:
  MAILFERRY_COORDINATOR=http://127.0.0.1:50051 MAILFERRY_API_TOKEN=$(head -1 api-tokens) \
  SRC_URL=imaps://alice@old.example.net DST_URL=imaps://alice@new.example.org \
  SRC_PASSWORD=... DST_PASSWORD=... PYTHONPATH=stubs python examples/python/migrate.py
A URL may name a port; imap:// is STARTTLS; SRC_CA / DST_CA name a PEM file of a private CA.
"""
import os
import sys
import uuid
from urllib.parse import unquote, urlparse

import grpc
from mailferry.v1 import migration_pb2 as pb, migration_pb2_grpc as pb_grpc

api = urlparse(os.environ.get("MAILFERRY_COORDINATOR", "http://127.0.0.1:50051"))
if api.scheme == "https":  # a coordinator started with --tls-cert/--tls-key
    ca = os.environ.get("MAILFERRY_CA")  # its private CA, if it has one
    pem = open(ca, "rb").read() if ca else None
    channel = grpc.secure_channel(api.netloc, grpc.ssl_channel_credentials(pem))
else:  # plain HTTP/2: loopback or a private network only
    channel = grpc.insecure_channel(api.netloc)
stub = pb_grpc.MigrationServiceStub(channel)
auth = [("authorization", "Bearer " + os.environ["MAILFERRY_API_TOKEN"])]


def endpoint(side):
    url = urlparse(os.environ[side + "_URL"])
    ca = os.environ.get(side + "_CA")
    return pb.Endpoint(
        host=url.hostname, port=url.port or 0, user=unquote(url.username),
        tls=pb.TLS_MODE_IMPLICIT if url.scheme == "imaps" else pb.TLS_MODE_STARTTLS,
        ca_pem=open(ca).read() if ca else "")


m = stub.CreateMigration(pb.CreateMigrationRequest(
    request_id=str(uuid.uuid4()), name="example",
    pairs=[pb.PairSpec(
        source=endpoint("SRC"),
        source_credentials=pb.Credentials(password=os.environ["SRC_PASSWORD"]),
        target=endpoint("DST"),
        target_credentials=pb.Credentials(password=os.environ["DST_PASSWORD"]))],
    options=pb.MigrationOptions(sync_interval="3h")), metadata=auth)
print("migration", m.id)
for event in stub.WatchMigration(pb.WatchMigrationRequest(migration_id=m.id), metadata=auth):
    t = event.migration.totals
    print(f"{t.messages_copied} of {t.planned} messages copied")
failures = stub.ListFailures(pb.ListFailuresRequest(migration_id=m.id), metadata=auth).failures
for f in failures:
    print(f"{f.folder} UID {f.uid}: {f.reason} ({f.advice})")
sys.exit(1 if failures else 0)
