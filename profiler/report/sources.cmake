# Sources of the report engine, compiled into libspillway (one file per line).
set(SPILLWAY_REPORT_SOURCES
  analyze.cpp
  text.cpp
  json.cpp
  chrome.cpp
  output.cpp
  html.cpp
  memviz.cpp
  callsites.cpp
  kinds.cpp
  offload.cpp
)
