SET "APP" . /* c */ "Tenant_Id" TO E'a\x62' -- x
'c'