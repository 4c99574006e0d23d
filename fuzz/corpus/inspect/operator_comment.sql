select 1 +/* ; */ 2 +-- ;
 3; SET ROLE x