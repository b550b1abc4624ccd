"""A throw-away PKI for one test cluster, made with the openssl command line tool."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .tools import KubeToolsError

DAYS = "7"


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        raise KubeToolsError(f"openssl {args[0]} failed in {cwd}: {proc.stderr.strip()}")


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


class PKI:
    """A CA, certificates signed by it, and the service-account signing key pair."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = CertPair(self.dir / "ca.crt", self.dir / "ca.key")
        self.sa_key = self.dir / "sa.key"
        self.sa_pub = self.dir / "sa.pub"
        if not self.ca.cert.exists():
            _openssl(
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                DAYS,
                "-subj",
                "/CN=qforge-test-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                cwd=self.dir,
            )
        if not self.sa_key.exists():
            _openssl(
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "sa.key",
                cwd=self.dir,
            )
            _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=self.dir)

    def issue(
        self,
        name: str,
        common_name: str,
        organizations: tuple[str, ...] = (),
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        server: bool = False,
    ) -> CertPair:
        """A key and certificate ``<name>.crt``/``<name>.key`` signed by the CA."""
        pair = CertPair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        if pair.cert.exists() and pair.key.exists():
            return pair
        subject = "".join(f"/O={o}" for o in organizations) + f"/CN={common_name}"
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=" + ("serverAuth,clientAuth" if server else "clientAuth"),
        ]
        sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
        if sans:
            ext.append("subjectAltName=" + ",".join(sans))
        (self.dir / f"{name}.ext").write_text("\n".join(ext) + "\n")
        _openssl(
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            pair.key.name,
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
            cwd=self.dir,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            str(secrets.randbits(62) + 2),
            "-days",
            DAYS,
            "-extfile",
            f"{name}.ext",
            "-out",
            pair.cert.name,
            cwd=self.dir,
        )
        return pair
