"""The staff admin: login throttling (django-axes) and the staff session's lifetime."""

from datetime import timedelta

from lithtrix.settings.env import env_int

# A staff session lasts a working day, not Django's default two weeks.
LITHTRIX_ADMIN_SESSION_SECONDS = env_int("LITHTRIX_ADMIN_SESSION_SECONDS", 8 * 3600)
SESSION_COOKIE_AGE = LITHTRIX_ADMIN_SESSION_SECONDS

# After AXES_FAILURE_LIMIT wrong passwords for one user name from one client
# address, that user name is refused from that address for AXES_COOLOFF_TIME, the
# right password too; after LITHTRIX_ADMIN_LOGIN_ADDRESS_FAILURE_LIMIT from one
# address over any user names, that address is refused for every name. A user
# name alone is never locked: whoever knows it could keep its owner out.
AXES_FAILURE_LIMIT = env_int("LITHTRIX_ADMIN_LOGIN_FAILURE_LIMIT", 5)
LITHTRIX_ADMIN_LOGIN_ADDRESS_FAILURE_LIMIT = env_int(
    "LITHTRIX_ADMIN_LOGIN_ADDRESS_FAILURE_LIMIT", 20
)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("LITHTRIX_ADMIN_LOGIN_COOLOFF_SECONDS", 15 * 60))
# The pair, then the address: lithtrix.admin_lockout gives each its own limit.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_HANDLER = "lithtrix.admin_lockout.AdminLoginHandler"
AXES_RESET_ON_SUCCESS = True
# The client address as the rate limits see it (LITHTRIX_TRUSTED_PROXIES).
AXES_CLIENT_IP_CALLABLE = "lithtrix.core.http.client_ip"
# Lockouts go to the log as one WARNING line (axes' own logger), not as a traceback.
AXES_VERBOSE = False

# One date format in every admin page and template, in UTC, saying so
# (lithtrix/formats/en/formats.py).
FORMAT_MODULE_PATH = ["lithtrix.formats"]
