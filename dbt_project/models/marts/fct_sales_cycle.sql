-- Sales cycle = lead created -> won, in fractional days, for the leads won in each pipeline by
-- the as-of date: median and p90 (and the mean), sliced like fct_funnel_stage_slices:
-- GROUPING SETS over channel x manager x lead-creation month, with by_* flags marking the
-- slices applied (all false = the pipeline as a whole). Won = arrival at the pipeline's won
-- step; for the Bitrix24 `lead` pipeline that is the lead's conversion into a deal.
-- Deterministic by construction: the mean is an exact sum of whole seconds over a count (a
-- float sum's last bits depend on the order parallel threads add rows in), and every
-- published figure is a decimal rounded to 6 places (about 0.1 s), identical in every build.
with

pipelines as (

    select distinct crm, account, pipeline_id, pipeline_name
    from {{ ref('int_pipeline_stages__ordered') }}

),

won_leads as (

    select
        crm,
        account,
        pipeline_id,
        lead_id,
        channel,
        responsible_user_id,
        manager_name,
        created_month,
        {{ days_between('created_at', 'won_at') }} as sales_cycle_days,
        cast({{ dbt.datediff('created_at', 'won_at', 'second') }} as bigint) as sales_cycle_seconds
    from {{ ref('int_lead_stage_reached') }}
    where is_won_step and pipeline_outcome = 'won'

),

sliced as (

    select
        crm,
        account,
        pipeline_id,
        grouping(channel) = 0 as by_channel,
        grouping(responsible_user_id) = 0 as by_manager,
        grouping(created_month) = 0 as by_month,
        channel,
        responsible_user_id,
        manager_name,
        created_month,
        count(*) as leads_won,
        cast(sum(sales_cycle_seconds) as double precision)
            / (cast(count(*) as double precision) * 86400.0) as mean_sales_cycle_days,
        {{ median('sales_cycle_days') }} as median_sales_cycle_days,
        {{ percentile_cont('sales_cycle_days', 0.9) }} as p90_sales_cycle_days
    from won_leads
    group by {{ funnel_slice_grouping_sets(['crm', 'account', 'pipeline_id']) }}

),

final as (

    select
        sliced.crm,
        sliced.account,
        sliced.pipeline_id,
        pipelines.pipeline_name,
        sliced.by_channel,
        sliced.by_manager,
        sliced.by_month,
        sliced.channel,
        sliced.responsible_user_id,
        sliced.manager_name,
        sliced.created_month,
        cast(sliced.leads_won as bigint) as leads_won,
        {{ exact_days('sliced.mean_sales_cycle_days') }} as mean_sales_cycle_days,
        {{ exact_days('sliced.median_sales_cycle_days') }} as median_sales_cycle_days,
        {{ exact_days('sliced.p90_sales_cycle_days') }} as p90_sales_cycle_days
    from sliced
    inner join pipelines
        on sliced.crm = pipelines.crm
        and sliced.account = pipelines.account
        and sliced.pipeline_id = pipelines.pipeline_id

)

select * from final
