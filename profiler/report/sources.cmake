# Sources of the report engine, compiled into libspillway (one file per line).
set(SPILLWAY_REPORT_SOURCES
)
