# The console's one way to write a time: "2026-12-03 07:36 UTC" (TIME_ZONE is UTC),
# in place of English's "Dec. 3, 2026, 7:33 a.m.", which names no zone.
DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
TIME_FORMAT = "H:i T"
