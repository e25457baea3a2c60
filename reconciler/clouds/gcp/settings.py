"""What GCP needs beyond the spec: the project (every resource lives in one), which images
are GCP images, and the project as a tfvars context entry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.clouds.settings import ENV_GCP_PROJECT, CloudSettings, ProviderSettings
from reconciler.errors import CloudConfigError
from reconciler.spec.model import ServiceSpec


def image_fits(image: str) -> bool:
    """Whether a spec's image_id is a GCP image (`projects/...`, an images URL, `family/...`)."""
    return image.startswith(("projects/", "https://www.googleapis.com/", "family/"))


def stack_context(settings: CloudSettings, region: str) -> dict[str, Any]:
    """`project` for the GCP module; CloudConfigError when no project is set."""
    if not settings.gcp_project:
        raise CloudConfigError("set the GCP project (CloudSettings.gcp_project)")
    return {"project": settings.gcp_project}


def check_settings(spec: ServiceSpec, regions: Sequence[str], settings: ProviderSettings) -> None:
    """SettingsError when no GCP project is set (`gcp_project`, GOOGLE_CLOUD_PROJECT)."""
    if not settings.cloud.gcp_project:
        raise settings.missing("no GCP project", ENV_GCP_PROJECT, "gcp_project")
