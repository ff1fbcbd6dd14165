{#-
    PostgreSQL plans every model on tables dbt has just created, without statistics (autovacuum
    analyses a new table later, if ever, never before the next model reads it), and CTEs used
    more than once or aggregated have none at all. It then multiplies the selectivities of
    multi-column join keys, estimates one row for joins of thousands and nests loops over them.
    The warehouse's tables have no indexes, so such a loop scans the inner side once per outer
    row: int_lead_stage_reached took 135-500 s and fct_buyer_funnel_monthly 1.5-13 s on the demo
    business against 0.1-0.2 s on DuckDB. Hence, before every model on PostgreSQL, for the
    model's transaction only (`set local`; DuckDB gets an empty hook, which dbt skips):
      * no nested loop where another join method exists (a join on an inequality still gets
        one): a wrong estimate then costs a hash join of the real inputs, not their product;
      * no JIT compilation: the planner starts it from the cost estimate alone (which disallowed
        nested loops inflate) and it cost 0.5-3 s per model here, for queries of 0.01-0.3 s.
    Analysing each new table (a post-hook) was measured too: it fixes the estimates but costs
    up to 0.17 s per 17k-row table, and the whole run came out the same (10.2 s against 9.6 s).
-#}
{% macro pg_planner_settings() -%}
    {%- if target.type == 'postgres' -%}
        set local enable_nestloop = off; set local jit = off
    {%- endif -%}
{%- endmacro %}
