-- fct_funnel_stage_conversion sliced by channel, manager and lead-creation month. Medians do
-- not add up, so every combination of the three slices is computed from the lead-level rows
-- with GROUPING SETS (all 8 combinations; a slice not applied is marked by its by_* flag
-- being false and its value being null). by_channel = by_manager = by_month = false is the
-- pipeline as a whole (it equals fct_funnel_stage_conversion for steps with leads).
with

stages as (

    select * from {{ ref('int_pipeline_stages__ordered') }}

),

lead_stages as (

    select * from {{ ref('int_lead_stage_reached') }}

),

sliced as (

    select
        crm,
        account,
        pipeline_id,
        status_id,
        grouping(channel) = 0 as by_channel,
        grouping(responsible_user_id) = 0 as by_manager,
        grouping(created_month) = 0 as by_month,
        channel,
        responsible_user_id,
        manager_name,
        created_month,
        sum(case when reached then 1 else 0 end) as leads_reached,
        sum(case when reached_next then 1 else 0 end) as leads_reached_next,
        sum(case when dropped_off_here then 1 else 0 end) as leads_dropped_off,
        -- every lead of the pipeline has a row on every step and reached the first one
        count(*) as leads_in_pipeline,
        sum(case when pipeline_outcome = 'won' then 1 else 0 end) as leads_won,
        {{ median("case when is_closed_in_pipeline then hours_in_stage end") }}
            as median_hours_in_stage,
        {{ percentile_cont("case when is_closed_in_pipeline then hours_in_stage end", 0.9) }}
            as p90_hours_in_stage
    from lead_stages
    group by {{ funnel_slice_grouping_sets(['crm', 'account', 'pipeline_id', 'status_id']) }}

),

final as (

    select
        sliced.crm,
        sliced.account,
        sliced.pipeline_id,
        stages.pipeline_name,
        sliced.status_id,
        stages.stage_name,
        cast(stages.stage_order as integer) as stage_order,
        stages.next_status_id,
        sliced.by_channel,
        sliced.by_manager,
        sliced.by_month,
        sliced.channel,
        sliced.responsible_user_id,
        sliced.manager_name,
        sliced.created_month,
        cast(sliced.leads_in_pipeline as bigint) as leads_in_pipeline,
        cast(sliced.leads_reached as bigint) as leads_reached,
        case when stages.next_status_id is not null
            then cast(sliced.leads_reached_next as bigint)
        end as leads_reached_next,
        case when stages.next_status_id is not null
            then {{ safe_divide('sliced.leads_reached_next', 'sliced.leads_reached') }}
        end as conversion_to_next,
        cast(sliced.leads_won as bigint) as leads_won,
        {{ safe_divide('sliced.leads_won', 'sliced.leads_in_pipeline') }} as win_rate,
        cast(sliced.leads_dropped_off as bigint) as leads_dropped_off,
        cast(sliced.median_hours_in_stage as double precision) as median_hours_in_stage,
        cast(sliced.p90_hours_in_stage as double precision) as p90_hours_in_stage
    from sliced
    inner join stages
        on sliced.crm = stages.crm
        and sliced.account = stages.account
        and sliced.pipeline_id = stages.pipeline_id
        and sliced.status_id = stages.status_id

)

select * from final
