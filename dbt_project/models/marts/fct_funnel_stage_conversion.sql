-- One row per pipeline funnel step (amoCRM pipelines, Bitrix24 deal categories and the
-- Bitrix24 lead statuses): the open stages in the pipeline's order, then won.
-- A lead reached stage s when its history contains s or any later open stage, or it was
-- won (leads skip stages). conversion_to_next = reached(next) / reached(s);
-- win_rate = won / reached(first stage), the same on every row of a pipeline.
-- leads_dropped_off: lost leads whose last open stage was s. Time in stage (median / p90
-- hours) counts only leads closed (won or lost) in the pipeline by the as-of date.
-- Lead-level facts: int_lead_stage_reached (one row per lead x step).
with

stages as (

    select * from {{ ref('int_pipeline_stages__ordered') }}

),

lead_stages as (

    select * from {{ ref('int_lead_stage_reached') }}

),

per_stage as (

    select
        crm,
        account,
        pipeline_id,
        status_id,
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
    group by crm, account, pipeline_id, status_id

),

final as (

    select
        stages.crm,
        stages.account,
        stages.pipeline_id,
        stages.pipeline_name,
        stages.status_id,
        stages.stage_name,
        cast(stages.stage_order as integer) as stage_order,
        cast(coalesce(per_stage.leads_reached, 0) as bigint) as leads_reached,
        stages.next_status_id,
        case when stages.next_status_id is not null
            then cast(coalesce(per_stage.leads_reached_next, 0) as bigint)
        end as leads_reached_next,
        case when stages.next_status_id is not null
            then {{ safe_divide('per_stage.leads_reached_next', 'per_stage.leads_reached') }}
        end as conversion_to_next,
        {{ safe_divide('per_stage.leads_won', 'per_stage.leads_in_pipeline') }} as win_rate,
        cast(coalesce(per_stage.leads_dropped_off, 0) as bigint) as leads_dropped_off,
        cast(per_stage.median_hours_in_stage as double precision) as median_hours_in_stage,
        cast(per_stage.p90_hours_in_stage as double precision) as p90_hours_in_stage
    from stages
    left join per_stage
        on stages.crm = per_stage.crm
        and stages.account = per_stage.account
        and stages.pipeline_id = per_stage.pipeline_id
        and stages.status_id = per_stage.status_id

)

select * from final
