"""Test credentials for TLS migrations: CAs, certificates and one-time keys, made fresh
in a directory (python3-cryptography), as docs/encryption.md tells a user to make them
with the openssl CLI."""
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path, key):
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(path, 0o600)


def _write_cert(path, cert):
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


class CA:
    def __init__(self, directory, name):
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.utcnow()
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                  False, False), True)
                     .sign(self.key, hashes.SHA256()))
        self.path = str(directory / f"{name}.pem")
        _write_cert(self.path, self.cert)

    def issue(self, name, dns=(), ips=(), expired=False):
        """A certificate for both ends of a move (serverAuth and clientAuth): (cert, key)
        paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.utcnow()
        start, end = (now - 10 * DAY, now - DAY) if expired else (now - DAY, now + 30 * DAY)
        alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i))
                                                 for i in ips]
        b = (x509.CertificateBuilder().subject_name(_name(name))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                   ExtendedKeyUsageOID.CLIENT_AUTH]), False))
        if alt:
            b = b.add_extension(x509.SubjectAlternativeName(alt), False)
        cert = b.sign(self.key, hashes.SHA256())
        cpath, kpath = str(self.dir / f"{name}.crt"), str(self.dir / f"{name}.key")
        _write_cert(cpath, cert)
        _write_key(kpath, key)
        return cpath, kpath


def psk_file(directory, name="move.key"):
    """A fresh one-time key, 64 hex digits, as `openssl rand -hex 32` writes it."""
    path = directory / name
    path.write_text(os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)
    return str(path)


class Credentials:
    """One CA with a source (src.test) and a destination (dst.test, 127.0.0.1)
    certificate, a second CA that signed neither, and an expired destination certificate."""

    def __init__(self, directory):
        directory.mkdir(exist_ok=True)
        self.ca = CA(directory, "ca")
        self.other_ca = CA(directory, "other-ca")
        self.src = self.ca.issue("src", dns=["src.test"])
        self.dst = self.ca.issue("dst", dns=["dst.test"], ips=["127.0.0.1"])
        self.dst_expired = self.ca.issue("dst-expired", dns=["dst.test"], ips=["127.0.0.1"],
                                         expired=True)
        self.stranger = self.other_ca.issue("stranger", dns=["src.test", "dst.test"],
                                            ips=["127.0.0.1"])

    @staticmethod
    def args(pair, ca):
        cert, key = pair
        return ["--tls-cert", cert, "--tls-key", key, "--tls-ca", ca]

    def source_args(self, pair=None, ca=None):
        return self.args(pair or self.src, ca or self.ca.path)

    def dest_args(self, pair=None, ca=None):
        return self.args(pair or self.dst, ca or self.ca.path)
