#!/bin/sh
# archserve's example CGI script (POSIX sh, no other dependency): prints a few of the
# meta-variables it was given and, for a POST, the request body it read from stdin.
# Try: archserve serve --cgi-dir cgi-bin, then
#   curl 'http://127.0.0.1:2000/cgi-bin/hello.sh/extra/path?name=world'
#   curl --data 'a=1&b=2' http://127.0.0.1:2000/cgi-bin/hello.sh
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
printf 'Hello from CGI\n'
printf 'REQUEST_METHOD=%s\n' "$REQUEST_METHOD"
printf 'QUERY_STRING=%s\n' "$QUERY_STRING"
printf 'SCRIPT_NAME=%s\n' "$SCRIPT_NAME"
printf 'PATH_INFO=%s\n' "${PATH_INFO-}"
printf 'REMOTE_ADDR=%s\n' "$REMOTE_ADDR"
printf 'SERVER_PROTOCOL=%s\n' "$SERVER_PROTOCOL"
if [ -n "${CONTENT_LENGTH-}" ]; then
    printf 'CONTENT_TYPE=%s\n' "${CONTENT_TYPE-}"
    printf 'body: '
    head -c "$CONTENT_LENGTH"
    printf '\n'
fi
