"""SigV4 authentication of the POST routes (``--auth sigv4``).

:func:`load_credentials` reads the accepted keys: JSON ``{"ACCESS_KEY_ID": "SECRET", ...}`` or an
AWS-style ini file (``[profile]`` sections with ``aws_access_key_id`` / ``aws_secret_access_key``).
:class:`SigV4Verifier` checks AWS Signature Version 4 (signing name ``personalize``) by signing
the request again with botocore's own signer. Rejections raise ``rankcore.errors.AuthError`` with
the code AWS sends (``MissingAuthenticationTokenException``, ``UnrecognizedClientException``,
``InvalidSignatureException``, ...); the app answers them with 403. The credential scope must
name the server's region and the service; ``UNSIGNED-PAYLOAD`` (a body outside the signature)
is refused unless ``allow_unsigned_payload``. :meth:`SigV4Verifier.check_headers` checks
everything but the signature itself, so a request is refused before its body is read.
"""
from __future__ import annotations

import configparser
import datetime as _dt
import hashlib
import hmac
import json
import time
from typing import Mapping

from ..errors import AuthError

__all__ = ["load_credentials", "SigV4Verifier"]


def load_credentials(path: str) -> dict:
    """Access key ID -> secret, from JSON ``{"AKID": "SECRET"}`` or an AWS credentials ini file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if data is not None:
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in data.items()):
            raise ValueError(f"{path}: credentials JSON must map access key IDs to secret keys")
        creds = dict(data)
    else:
        cp = configparser.ConfigParser()
        try:
            cp.read_string(text)
        except configparser.Error as exc:
            raise ValueError(f"{path}: neither JSON nor an ini credentials file ({exc})") from None
        creds = {}
        for section in cp.sections():
            akid = cp.get(section, "aws_access_key_id", fallback=None)
            secret = cp.get(section, "aws_secret_access_key", fallback=None)
            if akid and secret:
                creds[akid.strip()] = secret.strip()
    if not creds:
        raise ValueError(f"{path}: no credentials found")
    return creds


def _parse_authorization(auth: str) -> tuple:
    """``Authorization`` header -> ``(akid, date, region, service, signed_headers, signature)``."""
    try:
        algorithm, _, rest = auth.partition(" ")
        parts = dict(p.strip().split("=", 1) for p in rest.split(","))
        credential = parts["Credential"]
        signed_headers = parts["SignedHeaders"].split(";")
        signature = parts["Signature"]
        akid, date, region, service, terminal = credential.split("/")
    except (ValueError, KeyError):
        raise AuthError("IncompleteSignatureException",
                        "Authorization header requires Credential, SignedHeaders and Signature") from None
    if algorithm != "AWS4-HMAC-SHA256" or terminal != "aws4_request":
        raise AuthError("IncompleteSignatureException", f"Unsupported signature algorithm {algorithm}")
    return akid, date, region, service, signed_headers, signature


class SigV4Verifier:
    """Verify AWS SigV4 ``Authorization`` headers by re-signing with botocore's ``SigV4Auth``."""

    MAX_SKEW = 300.0

    def __init__(self, credentials: Mapping[str, str], service: str = "personalize", *,
                 region: str | None = None, allow_unsigned_payload: bool = False):
        # lazy: botocore is needed only with --auth sigv4
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        self.credentials = dict(credentials)
        self.service = service
        self.region = region
        self.allow_unsigned_payload = allow_unsigned_payload
        self._SigV4Auth, self._AWSRequest, self._Credentials = SigV4Auth, AWSRequest, Credentials

    def check_headers(self, headers: Mapping[str, str]) -> tuple:
        """Everything but the signature: ``(akid, secret, region, amz_date, signed_headers,
        signature)``, or ``AuthError``. ``headers`` lower-case."""
        auth = headers.get("authorization")
        if not auth:
            raise AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
        akid, date, region, service, signed_headers, signature = _parse_authorization(auth)
        secret = self.credentials.get(akid)
        if secret is None:
            raise AuthError("UnrecognizedClientException", "The security token included in the request is invalid.")
        amz_date = headers.get("x-amz-date", "")
        try:
            when = _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            raise AuthError("IncompleteSignatureException", "X-Amz-Date header is missing or malformed") from None
        if (service != self.service or date != amz_date[:8]
                or (self.region is not None and region != self.region)):
            where = f"region '{self.region}'" if self.region is not None else "a valid region"
            raise AuthError("InvalidSignatureException",
                            f"Credential should be scoped to {where} and to service '{self.service}'.")
        if abs(time.time() - when.timestamp()) > self.MAX_SKEW:
            raise AuthError("InvalidSignatureException",
                            f"Signature expired: {amz_date} is more than 5 minutes from the server time.")
        if headers.get("x-amz-content-sha256") == "UNSIGNED-PAYLOAD" and not self.allow_unsigned_payload:
            raise AuthError("InvalidSignatureException",
                            "UNSIGNED-PAYLOAD is not accepted: sign the request body")
        for name in signed_headers:
            if name not in headers:
                raise AuthError("InvalidSignatureException", f"Signed header {name!r} is missing")
        return akid, secret, region, amz_date, signed_headers, signature

    def verify(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> None:
        """Raise ``AuthError`` unless the request is signed with a known key. ``headers`` lower-case."""
        akid, secret, region, amz_date, signed_headers, signature = self.check_headers(headers)
        signed = {name: headers[name] for name in signed_headers}
        host = headers.get("host", "localhost")
        url = f"http://{host}{path}" + (f"?{query}" if query else "")
        req = self._AWSRequest(method=method, url=url, data=body, headers=signed)
        req.context["timestamp"] = amz_date
        token = headers.get("x-amz-security-token")
        signer = self._SigV4Auth(self._Credentials(akid, secret, token), self.service, region)
        expected = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
        payload_hash = headers.get("x-amz-content-sha256")
        if payload_hash and payload_hash != "UNSIGNED-PAYLOAD":
            if not hmac.compare_digest(payload_hash, hashlib.sha256(body).hexdigest()):
                raise AuthError("InvalidSignatureException", "The provided payload hash does not match the body.")
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise AuthError("InvalidSignatureException",
                            "The request signature we calculated does not match the signature you "
                            "provided. Check your AWS Secret Access Key and signing method. Consult "
                            "the service documentation for details.")
