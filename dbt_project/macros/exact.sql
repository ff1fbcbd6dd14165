{#- A published non-money figure (days, hours): a decimal with six places. Rounding at the
    mart makes the digits identical between builds and backends even where the value came
    from floating point (a percentile's interpolation). -#}
{% macro exact_days(expr) -%}
    cast(round(cast({{ expr }} as numeric(38, 9)), 6) as numeric(18, 6))
{%- endmacro %}
