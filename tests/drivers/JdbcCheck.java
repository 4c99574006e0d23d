// pgjdbc through tenantgate (transaction pooling): run by tests/drivers.rs as
//   java -cp /usr/share/java/postgresql.jar JdbcCheck.java
//
// Exercises, from several concurrent clients (threads, one Connection each) over at least two
// tenants:
//   * prepareThreshold=1: every PreparedStatement is a named server statement (S_N) from its
//     first execution, which the proxy must re-prepare on whichever upstream a later
//     transaction lands on; the same PreparedStatement objects are reused across transactions;
//   * autocommit off (pgjdbc sends BEGIN in the same batch as the first query) and on;
//   * a batch insert (executeBatch: many Bind/Execute, one Sync), rolled back;
//   * setFetchSize inside a transaction (a portal fetched in chunks: PortalSuspended);
//   * an error inside a transaction, then rollback; Connection.isValid (an empty query).
// After every query it checks that what came back belongs to the client's own tenant.
//
// Environment:
//   TG_HOST, TG_PORT, TG_DB, TG_PASSWORD   where the proxy is
//   TG_TENANTS   JSON list of {"user", "id", "slug", "customers", "vehicles", "services",
//                "appointments"}
//   TG_CLIENTS_PER_TENANT (default 2), TG_ROUNDS (default 25)
// Exit status 0 when every check held; otherwise what was seen is printed and it exits 1.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class JdbcCheck {
    static final String HOST = env("TG_HOST", "127.0.0.1");
    static final String PORT = env("TG_PORT", null);
    static final String DB = env("TG_DB", null);
    static final String PASSWORD = env("TG_PASSWORD", null);
    static final int CLIENTS_PER_TENANT = Integer.parseInt(env("TG_CLIENTS_PER_TENANT", "2"));
    static final int ROUNDS = Integer.parseInt(env("TG_ROUNDS", "25"));
    static final AtomicLong QUERIES = new AtomicLong();

    static String env(String k, String dflt) {
        String v = System.getenv(k);
        if (v == null && dflt == null) throw new IllegalStateException(k + " is not set");
        return v == null ? dflt : v;
    }

    /** One seeded tenant as TG_TENANTS describes it. */
    record Tenant(String user, String id, String slug, Map<String, Long> counts) {
        long count(String table) {
            return counts.get(table);
        }
    }

    /** TG_TENANTS is a flat list of flat objects: a small regex reader is enough. */
    static List<Tenant> parseTenants(String json) {
        List<Tenant> out = new ArrayList<>();
        Matcher obj = Pattern.compile("\\{[^{}]*\\}").matcher(json);
        Pattern field = Pattern.compile("\"(\\w+)\"\\s*:\\s*(\"([^\"]*)\"|(-?\\d+))");
        while (obj.find()) {
            Map<String, String> strs = new HashMap<>();
            Map<String, Long> nums = new HashMap<>();
            Matcher f = field.matcher(obj.group());
            while (f.find()) {
                if (f.group(3) != null) strs.put(f.group(1), f.group(3));
                else nums.put(f.group(1), Long.parseLong(f.group(4)));
            }
            out.add(new Tenant(strs.get("user"), strs.get("id"), strs.get("slug"), nums));
        }
        return out;
    }

    static class Mismatch extends RuntimeException {
        Mismatch(String m) {
            super(m);
        }
    }

    static class Client implements Runnable {
        final Tenant t;
        final int no;
        final String label;
        final ConcurrentLinkedQueue<String> errors;

        Client(Tenant t, int no, ConcurrentLinkedQueue<String> errors) {
            this.t = t;
            this.no = no;
            this.label = t.slug() + "#" + no + " (" + t.user() + ")";
            this.errors = errors;
        }

        void fail(String what, Object seen) {
            throw new Mismatch(label + ": " + what + ": saw " + seen);
        }

        void setting(String v) {
            if (!t.id().equals(v)) fail("app.tenant_id is not " + t.id(), v);
        }

        void count(String table, long v, long extra) {
            long want = t.count(table) + extra;
            if (v != want) fail("count(" + table + ") expected " + want, v);
        }

        void name(String n) {
            if (n == null || !n.startsWith(t.slug())) fail("row not of tenant " + t.slug(), n);
        }

        long one(PreparedStatement ps) throws SQLException {
            QUERIES.incrementAndGet();
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) fail("no row", null);
                return rs.getLong(1);
            }
        }

        String text(PreparedStatement ps) throws SQLException {
            QUERIES.incrementAndGet();
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) fail("no row", null);
                return rs.getString(1);
            }
        }

        /** Every row's name is the tenant's and its setting column is the tenant id. */
        long names(PreparedStatement ps) throws SQLException {
            QUERIES.incrementAndGet();
            long n = 0;
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    name(rs.getString(1));
                    setting(rs.getString(2));
                    n++;
                }
            }
            return n;
        }

        @Override
        public void run() {
            Properties props = new Properties();
            props.setProperty("user", t.user());
            props.setProperty("password", PASSWORD);
            props.setProperty("sslmode", "disable");
            props.setProperty("prepareThreshold", "1");
            props.setProperty("connectTimeout", "10");
            String url = "jdbc:postgresql://" + HOST + ":" + PORT + "/" + DB;
            try (Connection c = DriverManager.getConnection(url, props)) {
                work(c);
            } catch (Throwable e) {
                java.io.StringWriter sw = new java.io.StringWriter();
                e.printStackTrace(new java.io.PrintWriter(sw));
                errors.add(label + ": " + e + "\n" + sw);
            }
        }

        void work(Connection c) throws SQLException {
            PreparedStatement count = c.prepareStatement("select count(*) from customers");
            PreparedStatement vehicles = c.prepareStatement("select count(*) from vehicles");
            PreparedStatement setting = c.prepareStatement("select current_setting('app.tenant_id')");
            PreparedStatement names = c.prepareStatement(
                    "select name, current_setting('app.tenant_id') from customers where name like ? order by id");
            names.setString(1, t.slug() + "%");
            PreparedStatement others = c.prepareStatement("select count(*) from customers where name not like ?");
            others.setString(1, t.slug() + "%");
            PreparedStatement insert = c.prepareStatement(
                    "insert into customers (tenant_id, name) values (current_setting('app.tenant_id')::uuid, ?)");
            PreparedStatement statements = c.prepareStatement("select name from pg_prepared_statements");
            PreparedStatement scan = c.prepareStatement(
                    "select name, current_setting('app.tenant_id') from customers order by id");
            scan.setFetchSize(2);

            for (int rnd = 0; rnd < ROUNDS; rnd++) {
                // What connection pools (HikariCP ...) run on checkout: an empty query.
                QUERIES.incrementAndGet();
                if (!c.isValid(5)) fail("isValid", false);
                // Autocommit on: each statement its own transaction, each may land elsewhere.
                c.setAutoCommit(true);
                count("customers", one(count), 0);
                setting(text(setting));
                count("customers", names(names), 0);
                count("customers", one(others), -t.count("customers"));

                // Autocommit off: pgjdbc's BEGIN rides with the first statement.
                c.setAutoCommit(false);
                count("vehicles", one(vehicles), 0);
                setting(text(setting));
                count("customers", names(names), 0);
                serverStatements(statements);
                // A portal read two rows at a time.
                count("customers", names(scan), 0);
                c.commit();

                switch (rnd % 3) {
                    case 0 -> {
                        // Batch insert, rolled back.
                        for (int i = 0; i < 5; i++) {
                            insert.setString(1, t.slug() + " jdbc " + no + "." + i);
                            insert.addBatch();
                        }
                        int[] done = insert.executeBatch();
                        QUERIES.addAndGet(done.length);
                        for (int d : done) if (d != 1) fail("batch insert row count", d);
                        count("customers", one(count), 5);
                        count("customers", names(names), 5);
                        c.rollback();
                    }
                    case 1 -> {
                        // An error aborts the transaction; rollback recovers it.
                        try (Statement st = c.createStatement()) {
                            QUERIES.incrementAndGet();
                            st.executeQuery("select 1 / 0");
                            fail("1/0 did not fail", null);
                        } catch (SQLException e) {
                            if (!"22012".equals(e.getSQLState())) throw e;
                        }
                        c.rollback();
                    }
                    default -> {
                        count("customers", one(count), 0);
                        c.commit();
                    }
                }
                c.setAutoCommit(true);
                count("customers", one(count), 0);
                setting(text(setting));
            }
        }

        /** Statements used in this transaction exist upstream under the proxy's names only. */
        void serverStatements(PreparedStatement ps) throws SQLException {
            QUERIES.incrementAndGet();
            List<String> seen = new ArrayList<>();
            boolean proxy = false;
            boolean leaked = false;
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    String n = rs.getString(1);
                    seen.add(n);
                    proxy |= n.startsWith("__tg_");
                    leaked |= n.startsWith("S_");
                }
            }
            if (!proxy || leaked) fail("server-side prepared statements", seen);
        }
    }

    public static void main(String[] args) throws Exception {
        List<Tenant> tenants = parseTenants(env("TG_TENANTS", null));
        if (tenants.stream().map(Tenant::id).distinct().count() < 2) {
            System.err.println("need at least two tenants in TG_TENANTS");
            System.exit(2);
        }
        long began = System.nanoTime();
        ConcurrentLinkedQueue<String> errors = new ConcurrentLinkedQueue<>();
        List<Thread> threads = new ArrayList<>();
        for (Tenant t : tenants) {
            for (int n = 0; n < CLIENTS_PER_TENANT; n++) {
                Thread th = new Thread(new Client(t, n, errors));
                th.start();
                threads.add(th);
            }
        }
        for (Thread th : threads) th.join();
        double secs = (System.nanoTime() - began) / 1e9;
        String version = org.postgresql.Driver.class.getPackage().getImplementationVersion();
        if (!errors.isEmpty()) {
            for (String e : errors) System.err.println("FAILED " + e);
            System.out.printf("pgjdbc %s: FAILED: %d of %d clients, %d queries%n", version, errors.size(),
                    threads.size(), QUERIES.get());
            System.exit(1);
        }
        System.out.printf("pgjdbc %s: %d queries, %d clients, %d tenants, %.1fs: ok%n", version, QUERIES.get(),
                threads.size(), tenants.size(), secs);
    }
}
