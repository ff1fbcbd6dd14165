{#- The funnel's slices: channel, manager and lead-creation month. Medians do not add up, so
    the sliced marts compute every combination of them at once with GROUPING SETS: all 8
    subsets of the slices, each on top of the `keys` (fct_funnel_stage_slices,
    fct_sales_cycle). by_channel / by_manager / by_month tell the combinations apart. -#}
{% macro funnel_slices() -%}
    {{ return(['channel', 'responsible_user_id, manager_name', 'created_month']) }}
{%- endmacro %}

{% macro funnel_slice_grouping_sets(keys) -%}
    grouping sets (
        {%- for mask in range(8) %}
        ({{ keys | join(', ') }}
            {%- for slice in funnel_slices() %}{% if mask // (2 ** loop.index0) % 2 == 1 %}, {{ slice }}{% endif %}{% endfor -%}
        ){{ ',' if not loop.last }}
        {%- endfor %}
    )
{%- endmacro %}
