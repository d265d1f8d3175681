"""Local, faithful stand-ins of the providers' APIs, served over real HTTP on 127.0.0.1."""

from scrapesync.sandbox.server import FaultRule, Sandbox

__all__ = ["FaultRule", "Sandbox"]
