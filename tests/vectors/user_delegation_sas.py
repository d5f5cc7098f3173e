# Run: python3 -m venv v && v/bin/pip install azure-storage-blob==12.31.1 && v/bin/python tests/vectors/user_delegation_sas.py
# src/media/delegation.rs checks its signatures against the two lines this prints (sig=...).
# Known-answer vector for the handler's user-delegation container SAS, made with Microsoft's Python SDK.
from datetime import datetime, timezone
import azure.storage.blob._shared_access_signature as bsas
from azure.storage.blob import generate_container_sas, UserDelegationKey, ContainerSasPermissions
bsas.X_MS_VERSION = "2026-04-06"
k = UserDelegationKey()
k.signed_oid = "11111111-2222-3333-4444-555555555555"
k.signed_tid = "66666666-7777-8888-9999-000000000000"
k.signed_start = "2026-12-03T00:00:00Z"
k.signed_expiry = "2026-12-04T00:00:00Z"
k.signed_service = "b"
k.signed_version = "2026-04-06"
k.value = "dGhpcyBpcyBhIHRlc3Qga2V5IG9mIDMyIGJ5dGVzISE="
for perm in [ContainerSasPermissions(read=True, list=True), ContainerSasPermissions(read=True, write=True, create=True, list=True)]:
    print(generate_container_sas("stvodeast", "mkio-asset-1", user_delegation_key=k, permission=perm,
        start=datetime(2026,12,3,1,0,0,tzinfo=timezone.utc), expiry=datetime(2026,12,3,9,0,0,tzinfo=timezone.utc),
        protocol="https", sts_hook=lambda s: print(repr(s))))
