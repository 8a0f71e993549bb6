"""English formats: ISO dates and 24-hour times, as lists, mails and commands write them
(keystore.timefmt), instead of Django's "Dec. 2, 2026, 12:54 a.m." on detail pages."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
