select E'a'
-- c
'\';set role x;--'