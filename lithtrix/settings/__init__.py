"""Settings, read from the environment (see the Configuration table in README.md).

One module per concern; each setting is assembled in exactly one of them.
Production secrets have no default: a deployment that forgets one fails at start,
not at the first request.
"""

from lithtrix.settings.admin import *  # noqa: F403
from lithtrix.settings.api import *  # noqa: F403
from lithtrix.settings.cache import *  # noqa: F403
from lithtrix.settings.database import *  # noqa: F403
from lithtrix.settings.django import *  # noqa: F403
from lithtrix.settings.jobs import *  # noqa: F403
from lithtrix.settings.logs import *  # noqa: F403
from lithtrix.settings.mail import *  # noqa: F403
from lithtrix.settings.monitoring import *  # noqa: F403
from lithtrix.settings.stripe import *  # noqa: F403
from lithtrix.settings.webhooks import *  # noqa: F403
